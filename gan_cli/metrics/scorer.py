"""The one registry of metrics, and the `Scorer` that computes them under a stated protocol.

Every reported number is named by what it is, how many samples it saw and which network saw
them (`fid5k_lenet`, `modes2.5k`), so numbers from different protocols never end up in the
same column. A Scorer is built once per run: it fixes the metric list, the sample count, the
backbone and the real-data features, which later evaluations reuse.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from gan_cli.data.toys import GAUSS1D_MEAN, make_toy, mode_centers
from gan_cli.errors import GanError, one_of
from gan_cli.metrics import toy
from gan_cli.metrics.backbones import BACKBONES

LOWER, HIGHER, NEAR_ONE = "min", "max", "one"  # NEAR_ONE: a ratio to the data's own value, best at 1


def is_better(value: float, best: Optional[float], direction: str) -> bool:
    """Whether `value` beats `best` (None: nothing yet) in the metric's direction; NaN never does."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    if direction == NEAR_ONE:
        return abs(math.log(value)) < abs(math.log(best)) if value > 0 and best > 0 else value > 0 and best <= 0
    return value > best if direction == HIGHER else value < best


MODE_TOYS = ("ring8", "grid25")


@dataclass
class Batch:
    """What a metric's computation reads: the scorer (real features, protocol), the generated samples, their
    features and class logits (image metrics), the labels they were generated with, D's probability (dstar)."""

    scorer: Scorer
    fake: torch.Tensor
    feats: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None
    d_prob: Optional[Callable[[torch.Tensor], torch.Tensor]] = None


def _features():
    from gan_cli.metrics import features  # torchmetrics takes seconds to import: only when scoring images

    return features


def _modes(b: Batch) -> dict[str, float]:
    cov = toy.mode_coverage(b.fake, mode_centers(b.scorer.spec.name), b.scorer.std)
    return {
        "modes": float(cov.modes_covered),
        "hq": 100.0 * cov.high_quality,
        "spread": cov.spread,
        "mode_kl": cov.mode_kl,
    }


def _dstar(b: Batch) -> dict[str, float]:
    s = b.scorer
    return {"dstar_l1": toy.dstar_distance(*s.dstar_curve(b.fake, b.d_prob, s.dstar_points(b.fake)))}


@dataclass(frozen=True)
class Metric:
    """One registered metric: what it reports, how to compute it, and what it needs."""

    outputs: dict[str, str]  # reported quantity -> whether lower or higher is better
    help: str
    compute: Callable[[Batch], dict[str, float]]
    on_features: bool = True  # image metric computed from backbone features (else a toy metric)
    needs_logits: bool = False  # needs class probabilities (a classifier backbone)
    datasets: tuple[str, ...] = ()  # toy metric: the datasets it is defined for


METRICS: dict[str, Metric] = {
    "fid": Metric(
        {"fid": LOWER},
        "Frechet distance between Gaussian fits of real and fake features",
        lambda b: {"fid": _features().fid(b.scorer.real_feats, b.feats)},
    ),
    "kid": Metric(
        {"kid": LOWER},
        "kernel (MMD^2) distance of features, unbiased, 100 subsets",
        lambda b: {"kid": _features().kid(b.scorer.real_feats, b.feats, b.scorer.seed)},
    ),
    "is": Metric(
        {"is": HIGHER},
        "Inception-Score-style exp(E KL(p(y|x) || p(y))) with the classifier",
        lambda b: {"is": _features().inception_score(b.logits, b.scorer.seed)},
        needs_logits=True,
    ),
    "prdc": Metric(
        {k: HIGHER for k in ("precision", "recall", "density", "coverage")},
        "k-NN manifold estimates (k=5)",
        lambda b: _features().prdc(b.scorer.real_feats, b.feats),
    ),
    "classes": Metric(
        {"classes": HIGHER, "class_kl": LOWER},
        "classes the samples cover; KL of their class histogram to uniform",
        lambda b: _features().class_coverage(b.logits),
        needs_logits=True,
    ),
    "cond": Metric(
        {"cond_acc": HIGHER},
        "fraction of samples the classifier puts in the class they were generated with",
        lambda b: {"cond_acc": _features().conditional_accuracy(b.logits, b.labels.cpu())},
        needs_logits=True,
    ),
    "modes": Metric(
        {"modes": HIGHER, "hq": HIGHER, "spread": NEAR_ONE, "mode_kl": LOWER},
        "modes covered, % high-quality samples (within 3 std), their spread around the modes (data: 1) and KL of their mode shares to uniform",
        _modes,
        on_features=False,
        datasets=MODE_TOYS,
    ),
    "moments": Metric(
        {"mean_gap": LOWER, "std_gap": LOWER},
        "|sample mean - 7| and |sample std - std|",
        lambda b: toy.moment_gaps(b.fake, GAUSS1D_MEAN, b.scorer.std),
        on_features=False,
        datasets=("gauss1d",),
    ),
    "dstar": Metric(
        {"dstar_l1": LOWER},
        "mean |D(x) - D*(x)|, D* = p_data/(p_data + p_g)",
        _dstar,
        on_features=False,
        datasets=("gauss1d",),
    ),
}


def n_tag(n: int) -> str:
    """5000 -> '5k', 2500 -> '2.5k', 500 -> '500'."""
    return f"{n / 1000:g}k" if n >= 1000 else str(n)


def size_tag(spec) -> str:
    """'_16px' for a dataset with a size of its own (mnist5k's 28 px, cifar10's 32 px) resized to 16 px: its lenet is
    another classifier, trained on other images, and its numbers are on another scale, so they must not share a name
    with the native size's. '' at the native size, for points, and for data without a size of its own (image_folder,
    a user's dataset: `gan report` compares runs of one dataset and size only, see protocol_key)."""
    from gan_cli.data.datasets import KNOWN_IMAGE_SPECS

    known = KNOWN_IMAGE_SPECS.get(spec.name)
    if not spec.is_image or known is None or known[0][-1] == spec.shape[-1]:
        return ""
    return f"_{spec.shape[-1]}px"


def direction_of(name: str) -> Optional[str]:
    """'min', 'max' or 'one' for a reported score name such as fid5k_lenet, hq2.5k or is5k_lenet_t0.7; None when
    the name is not one gan reports. The inverse of Scorer.name_of, for readers of saved scores (gan report)."""
    outputs = {o: d for m in METRICS.values() for o, d in m.outputs.items()}
    for output in sorted(outputs, key=len, reverse=True):  # dstar_l1 before a shorter name it starts with
        if name.startswith(output) and re.fullmatch(
            r"(\d+(\.\d+)?k|\d+)(_[a-z0-9]+)?(_\d+px)?(_t[0-9.]+)?", name[len(output) :]
        ):
            return outputs[output]
    return None


COND_NEEDS_LABELS = (
    "metric 'cond' checks that a class-conditional generator draws the class it is asked for, and needs the labels the samples "
    "were generated with: this generator is not class-conditional. Train one with model.cond=concat|projection|acgan "
    "on a labelled dataset, or drop 'cond'."
)


def default_metrics(
    dataset: str, is_image: bool, has_labels: bool, backbone: str, has_d: bool, conditional: bool = False
) -> list[str]:
    if dataset in MODE_TOYS:
        return ["modes"]
    if dataset == "gauss1d":
        return ["moments", "dstar"] if has_d else ["moments"]
    if not is_image:
        return []
    with_logits = backbone == "lenet" and has_labels
    if not with_logits:
        return ["fid", "kid", "prdc"]
    return ["fid", "kid", "is", "prdc", "classes"] + (["cond"] if conditional else [])


def generated_labels(num_classes: int, n: int) -> Optional[torch.Tensor]:
    """The labels n samples of a conditional G are generated with: 0, 1, ..., k-1, 0, 1, ... (None when k = 0)."""
    return torch.arange(n) % num_classes if num_classes else None


def _check_metric(name: str, spec, backbone: str, has_d: bool, conditional: bool) -> None:
    """One chosen metric against the data, the backbone and what the samples will come with."""
    if name not in METRICS:
        raise one_of("metric", name, METRICS)
    m = METRICS[name]
    if m.on_features and not spec.is_image:
        toy_choices = ", ".join(f"{k} ({'/'.join(t.datasets)})" for k, t in METRICS.items() if not t.on_features)
        raise GanError(
            f"metric {name!r} compares image features, but dataset {spec.name!r} is toy data. Use {toy_choices}."
        )
    if not m.on_features and spec.name not in m.datasets:
        raise GanError(f"metric {name!r} is defined only for dataset {' or '.join(m.datasets)}, not {spec.name!r}.")
    if m.needs_logits and backbone != "lenet":
        raise GanError(
            f"metric {name!r} needs class probabilities, which backbone={backbone} does not give. Use backbone=lenet or drop {name!r}."
        )
    if name == "dstar" and not has_d:
        raise GanError(
            "metric 'dstar' compares D(x) with the optimal D*(x) and needs a probability-output D (loss=minimax or loss=ns)."
        )
    if name == "cond" and not conditional:
        raise GanError(COND_NEEDS_LABELS)


class Scorer:
    """Computes the chosen metrics of generated samples against one dataset, always the same way.

    `conditional`: the samples will come with the labels they were generated with (a class-conditional
    G, or held-out real data), which `cond` needs. `reference`: the caller scores `held_out_real()`,
    so the dataset must hold n samples besides the real set (checked before any feature is computed).
    """

    def __init__(
        self,
        data,
        dataset_cfg,
        metrics: Optional[list[str]],
        n: Optional[int],
        backbone: str,
        device: torch.device,
        seed: int,
        inception_weights: Optional[str] = None,
        has_d: bool = False,
        conditional: bool = False,
        reference: bool = False,
    ) -> None:
        spec = data.spec
        self.spec, self.device, self.seed = spec, device, seed
        self.std = 1.0 if dataset_cfg.get("std") is None else float(dataset_cfg.std)
        names = (
            list(metrics)
            if metrics
            else default_metrics(spec.name, spec.is_image, spec.num_classes > 0, backbone, has_d, conditional)
        )
        if not names:
            raise GanError(
                f"No metric is defined for dataset {spec.name!r}: pass metrics=[...] with some of {', '.join(METRICS)}."
            )
        for name in names:
            _check_metric(name, spec, backbone, has_d, conditional)
        if backbone not in BACKBONES:
            raise one_of("backbone", backbone, BACKBONES)
        self.metrics = names
        self.n = n if n is not None else (5000 if spec.is_image else 2500)
        if self.n < 2:
            raise GanError(f"n={self.n} must be at least 2 samples.")
        self.backbone_name = backbone
        self.protocol: dict = {"n_fake": self.n, "seed": seed, "dataset": spec.name}
        self.real_feats = self.real_logits = None
        # the real set: the first n_real of one seeded permutation; held_out_real() takes the next n
        self._data = data
        self._order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
        self.n_real = min(self.n, len(data))
        if reference:
            self._held_out_order()
        if any(METRICS[m].on_features for m in names):
            from gan_cli.metrics.backbones import build_backbone, labelled_tensors

            self.backbone = build_backbone(backbone, self._full(data, dataset_cfg), device, inception_weights)
            self.backbone_name = self.backbone.name  # lenetkm: the lenet of unlabelled images, trained on clusters
            x, _ = labelled_tensors(data)
            self.real_feats, self.real_logits = self.backbone.features(x[self._order[: self.n_real]], device)
            self.protocol.update(
                {
                    "backbone": self.backbone_name,
                    "n_real": self.n_real,
                    "split": "train (the data G learns from)",
                    "image_size": spec.shape[-1],
                    **self.backbone.info,
                }
            )
            self.protocol.pop("has_logits", None)
        else:
            self.protocol.update({"backbone": None, "n_real": "analytic (known mixture)", "split": None})

    @staticmethod
    def _full(data, dataset_cfg):
        """The dataset without dataset.limit: a run on a small subset is scored against that subset,
        but by the classifier trained on all labelled data (the same cached one for every limit)."""
        if dataset_cfg.get("limit") is None:
            return data
        from omegaconf import OmegaConf

        from gan_cli.data import load_dataset

        return load_dataset(OmegaConf.merge(dataset_cfg, {"limit": None}), 0)

    def _held_out_order(self) -> torch.Tensor:
        total = len(self._data)
        if self.n_real + self.n > total:
            raise GanError(
                f"A real reference needs n={self.n} samples besides the {self.n_real} of the real set, and dataset "
                f"{self.spec.name!r} holds {total}: use n <= {total // 2} (e.g. n={total // 2})."
            )
        return self._order[self.n_real : self.n_real + self.n]

    def held_out_real(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """n real samples (and their labels) never in the real set: the next n of the same seeded permutation.

        Scored as if generated, they give the value each score reaches for samples as good as the data itself.
        """
        from gan_cli.metrics.backbones import labelled_tensors

        idx = self._held_out_order()
        x, y = labelled_tensors(self._data)
        return x[idx], (y[idx] if y is not None else None)

    def name_of(self, output: str) -> str:
        """The reported name of one quantity: sample count and backbone included."""
        metric = next(m for m in METRICS.values() if output in m.outputs)
        if not metric.on_features:
            return f"{output}{n_tag(self.n)}"
        return f"{output}{n_tag(self.n)}_{self.backbone_name}{size_tag(self.spec)}"

    def directions(self) -> dict[str, str]:
        """{reported name: 'min', 'max' or 'one' (best at 1)} of every quantity this scorer reports."""
        return {self.name_of(o): d for m in self.metrics for o, d in METRICS[m].outputs.items()}

    def score(
        self,
        fake: torch.Tensor,
        d_prob: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        labels: Optional[torch.Tensor] = None,
    ) -> dict[str, float]:
        """Scores of `fake` (n samples, in data space); `d_prob` maps points to D's probability (for dstar);
        `labels`: the class each sample was generated with (for cond)."""
        if "cond" in self.metrics and labels is None:
            raise GanError(COND_NEEDS_LABELS)
        out: dict[str, float] = {}
        batch = Batch(self, fake.detach().float().cpu(), labels=labels, d_prob=d_prob)
        if any(METRICS[m].on_features for m in self.metrics):
            batch.feats, batch.logits = self.backbone.features(batch.fake, self.device)
        for m in self.metrics:
            out.update({self.name_of(k): v for k, v in METRICS[m].compute(batch).items()})
        return out

    def dstar_points(self, fake: torch.Tensor) -> torch.Tensor:
        real, _ = make_toy("gauss1d", len(fake), self.std, self.seed)
        return torch.cat([real.flatten(), fake.flatten()])

    @torch.no_grad()
    def dstar_curve(self, fake: torch.Tensor, d_prob, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(D(x), D*(x)) at the points xs."""
        if d_prob is None:
            raise GanError("metric 'dstar' needs the discriminator of the checkpoint.")
        d = d_prob(xs[:, None].float().to(self.device)).flatten().cpu()
        return d, toy.optimal_discriminator(xs, fake, GAUSS1D_MEAN, self.std)
