"""Toy metrics with known answers: mode coverage on Gaussian mixtures (VEEGAN/PacGAN definitions),
moments and the optimal discriminator of the 1-D example.

A sample is *high quality* when it lies within 3 standard deviations of its nearest mode; a
mode is *covered* when at least one high-quality sample has it as nearest mode. Those two numbers
reward a G that squeezes every mode to a point as much as one that draws it as wide as the data,
so `mode_coverage` also measures the *spread* of the high-quality samples around their modes
(1 = the data's own) and how evenly they are shared among the modes (`mode_kl`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModeCoverage:
    modes_covered: int
    n_modes: int
    high_quality: float  # fraction of samples within 3 std of their nearest mode
    spread: float = (
        math.nan
    )  # RMS distance of the high-quality samples to their mode, over the data's (1 = as wide as the data)
    mode_kl: float = math.nan  # KL(share of high-quality samples per mode || uniform): 0 when every mode gets its share


def kl_to_uniform(counts: torch.Tensor) -> float:
    """KL(histogram || uniform) of counts over k bins: 0 when balanced, log k when all fall in one bin."""
    share = counts.double() / counts.sum()
    nonzero = share[share > 0]
    return float((nonzero * (nonzero * len(counts)).log()).sum())


def truncated_mean_square(dims: int, n_std: float) -> float:
    """E[|x - mu|^2 / std^2 | |x - mu| <= n_std std] for an isotropic Gaussian in `dims` dimensions: |x - mu|^2 / std^2
    is chi-square with `dims` degrees of freedom, whose mean below t is dims * P(chi2_{dims+2} < t) / P(chi2_dims < t)."""
    t = torch.tensor(n_std**2 / 2, dtype=torch.float64)
    return float(
        dims
        * torch.special.gammainc(torch.tensor(dims / 2 + 1.0, dtype=torch.float64), t)
        / torch.special.gammainc(torch.tensor(dims / 2, dtype=torch.float64), t)
    )


def mode_coverage(samples: torch.Tensor, centers: torch.Tensor, std: float, n_std: float = 3.0) -> ModeCoverage:
    samples = samples.detach().float().cpu()
    dist = torch.cdist(samples, centers.float())
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist <= n_std * std
    covered = torch.unique(nearest[good]).numel()
    spread = mode_kl = math.nan
    if good.any():
        # mean square distance in std units, over what the data's own high-quality points have
        mean_square = float((nearest_dist[good] / std).square().mean())
        spread = math.sqrt(mean_square / truncated_mean_square(samples.shape[1], n_std))
        mode_kl = kl_to_uniform(torch.bincount(nearest[good], minlength=len(centers)))
    return ModeCoverage(int(covered), len(centers), float(good.float().mean()), spread, mode_kl)


def moment_gaps(samples: torch.Tensor, mean: float, std: float) -> dict[str, float]:
    """Distance of the sample mean and standard deviation to the data's (the 1-D example: 7 and 1)."""
    x = samples.detach().double().cpu().flatten()
    return {"mean_gap": abs(float(x.mean()) - mean), "std_gap": abs(float(x.std()) - std)}


def _gaussian(x: torch.Tensor, mean: float | torch.Tensor, std: float | torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def optimal_discriminator(x: torch.Tensor, fake: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """D*(x) = p_data / (p_data + p_g) for 1-D data N(mean, std^2), with p_g a Gaussian KDE of the samples
    (Silverman's bandwidth): the discriminator the minimax game's inner max converges to."""
    fake = fake.detach().double().cpu().flatten()
    bw = max(1.06 * float(fake.std()) * len(fake) ** -0.2, 1e-3)
    p_g = _gaussian(x.double()[:, None], fake[None, :], bw).mean(dim=1)
    p_data = _gaussian(x.double(), mean, std)
    return p_data / (p_data + p_g).clamp_min(1e-300)


def dstar_distance(d_prob: torch.Tensor, d_star: torch.Tensor) -> float:
    """Mean |D(x) - D*(x)| over points drawn half from the data and half from G."""
    return float((d_prob.double().cpu() - d_star).abs().mean())
