"""Scores computed from feature vectors: FID, KID, Inception Score, precision/recall/density/coverage, class coverage,
conditional accuracy.

FID, KID and IS come from torchmetrics. Its metrics run a feature module on images; ours are
computed once (and the real ones reused across evaluations), so the module handed to
torchmetrics passes the precomputed vectors through. Precision/recall (Kynkäänniemi et al. 2019)
and density/coverage (Naeem et al. 2020) are in no well-kept library, so they are written here.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from gan_cli.metrics.toy import kl_to_uniform

PRDC_K = 5  # neighbours defining each sample's manifold ball (the papers' default)
IS_SPLITS = 10
KID_SUBSET = 1000
KID_SUBSETS = 100  # StyleGAN's protocol: 100 subsets of 1000


class Precomputed(nn.Module):
    """Stands in for torchmetrics' feature network: the 'images' it receives are already features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = FrechetInceptionDistance(feature=Precomputed(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kid(real: torch.Tensor, fake: torch.Tensor, seed: int, subsets: int = KID_SUBSETS) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel, averaged over `subsets` random subsets (seeded)."""
    subset = min(KID_SUBSET, len(real), len(fake))
    with warnings.catch_warnings():  # "will save all extracted features": ours are already in memory
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=Precomputed(real.shape[1]), subset_size=subset, subsets=subsets)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, _ = metric.compute()
    return float(mean)


def inception_score(logits: torch.Tensor, seed: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metric = InceptionScore(feature=Precomputed(logits.shape[1]), splits=IS_SPLITS)
    metric.update(logits.double())
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, _ = metric.compute()
    return float(mean)


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest neighbour in its own set (itself excluded)."""
    return torch.cdist(x, x).kthvalue(k + 1, dim=1).values


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = PRDC_K) -> dict[str, float]:
    """k-NN manifold estimates: precision (fakes inside the real manifold), recall (reals inside the
    fake manifold), density (how many real balls hold each fake, /k) and coverage (real balls holding a fake)."""
    real, fake = real.float(), fake.float()
    r_radius, f_radius = _kth_radius(real, k), _kth_radius(fake, k)
    dist = torch.cdist(real, fake)  # [n_real, n_fake]
    inside_real = dist < r_radius[:, None]
    return {
        "precision": float(inside_real.any(dim=0).float().mean()),
        "recall": float((dist < f_radius[None, :]).any(dim=1).float().mean()),
        "density": float(inside_real.sum(dim=0).float().mean() / k),
        "coverage": float((dist.min(dim=1).values < r_radius).float().mean()),
    }


def class_coverage(logits: torch.Tensor) -> dict[str, float]:
    """How many classes the samples cover (a class counts when it gets at least a tenth of its
    uniform share of predictions) and KL(predicted-class histogram || uniform), 0 when balanced."""
    k = logits.shape[1]
    counts = torch.bincount(logits.argmax(dim=1), minlength=k)
    hist = counts.double() / len(logits)
    kl = kl_to_uniform(counts)
    return {"classes": float((hist >= 0.1 / k).sum()), "class_kl": kl if math.isfinite(kl) else float("inf")}


def conditional_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples the classifier assigns to the class they were generated with (1 = G always draws the asked class)."""
    if len(logits) != len(labels):
        raise ValueError(f"{len(logits)} samples but {len(labels)} labels")
    return float((logits.argmax(dim=1) == labels.to(logits.device)).float().mean())
