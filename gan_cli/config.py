"""Typed schemas for every config the `gan` commands compose.

Hydra merges the YAML files of `conf/` onto these dataclasses, so a typo in a key
(`train.stpes=5`) or a wrong type (`train.steps=abc`) fails before any work starts, with
OmegaConf naming the key. The YAML files hold the defaults users read and override; these
classes only say which keys exist and what type each one has.

Every option with a fixed set of values is an Enum: Hydra then refuses `model.d_norm=btach` while
composing, naming the allowed values, before a run directory or the data exist. The members are
strings (`Choice`), so the code compares them with plain names and checkpoints store plain names
(`to_plain`). The registries the values select from (models, losses, ...) are checked against these
lists by tests/test_config.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from gan_cli.errors import GanError


class Choice(str, Enum):
    """One allowed value of an option: a str (== "batch", hashes like "batch") that prints as its value."""

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return repr(self.value)

    __format__ = str.__format__


def _choices(name: str, values: tuple[str, ...]) -> type[Choice]:
    return Choice(name, {v: v for v in values})  # type: ignore[return-value]


ModelName = _choices("ModelName", ("mlp", "dcgan", "style", "shift"))
DNorm = _choices("DNorm", ("batch", "layer", "spectral", "none"))
GNorm = _choices("GNorm", ("batch", "virtual"))
Conditioning = _choices("Conditioning", ("none", "concat", "projection", "acgan", "cbn", "auto"))
Minibatch = _choices("Minibatch", ("none", "mbdisc", "mbstd"))
GActivation = _choices("GActivation", ("leaky", "relu"))
Objective = _choices("Objective", ("minimax", "ns", "wasserstein", "lsgan", "hinge"))
Penalty = _choices("Penalty", ("none", "gp", "dragan", "r1"))
OptimizerName = _choices("OptimizerName", ("adam", "rmsprop", "sgd"))
Schedule = _choices("Schedule", ("constant", "linear", "cosine"))
DatasetName = _choices("DatasetName", ("mnist5k", "mnist", "fashion_mnist", "cifar10", "image_folder", "ring8", "grid25", "gauss1d"))
Switch = _choices("Switch", ("auto", "on", "off"))
AmpMode = _choices("AmpMode", ("auto", "bf16", "fp16", "off"))
AugmentPolicy = _choices("AugmentPolicy", ("color", "translation", "cutout"))
Backbone = _choices("Backbone", ("lenet", "inception"))
SampleMode = _choices("SampleMode", ("grid", "classes", "interp", "arithmetic", "codes", "mix"))


@dataclass
class ModelConfig:
    name: ModelName = MISSING  # type: ignore[valid-type]
    z_dim: int = 100
    g_width: int = 64
    d_width: int = 64
    dropout: float = 0.0
    d_norm: DNorm = DNorm.batch  # type: ignore[valid-type]
    init_std: float = 0.02
    g_spectral: bool = False
    g_norm: GNorm = GNorm.batch  # type: ignore[valid-type]
    cond: Conditioning = Conditioning.none  # type: ignore[valid-type]
    attention: int = 0
    minibatch: Minibatch = Minibatch.none  # type: ignore[valid-type]
    info_cat: int = 0
    info_cont: int = 0
    ema: float = 0.0
    ema_warmup: bool = True
    pack: int = 1
    g_act: GActivation = GActivation.leaky  # type: ignore[valid-type]
    style_mixing: float = 0.0


@dataclass
class LossConfig:
    objective: Objective = MISSING  # type: ignore[valid-type]
    n_critic: int = 1
    penalty: Penalty = Penalty.none  # type: ignore[valid-type]
    penalty_weight: float = 0.0
    penalty_every: int = 1
    clip: Optional[float] = None
    label_smoothing: float = 0.0
    feature_matching: bool = False
    hist_weight: float = 0.0
    ortho_weight: float = 0.0
    aux_weight: float = 1.0
    aux_on_fake: bool = False
    info_weight: float = 1.0


@dataclass
class OptimizerConfig:
    name: OptimizerName = MISSING  # type: ignore[valid-type]
    lr: float = 2e-4
    lr_d: Optional[float] = None
    lr_g: Optional[float] = None
    betas: List[float] = field(default_factory=lambda: [0.5, 0.999])
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: Schedule = Schedule.constant  # type: ignore[valid-type]
    warmup: int = 0


@dataclass
class DatasetConfig:
    name: DatasetName = MISSING  # type: ignore[valid-type]
    root: Optional[str] = None
    download: bool = True
    path: Optional[str] = None
    image_size: Optional[int] = None
    channels: int = 3
    n: int = 20000
    std: Optional[float] = None
    limit: Optional[int] = None


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64
    log_every: int = 50
    sample_every: int = 500
    ckpt_every: int = 1000
    n_samples: int = 64
    num_workers: int = 2
    threads: Optional[int] = None
    amp: AmpMode = AmpMode.auto  # type: ignore[valid-type]
    channels_last: Switch = Switch.auto  # type: ignore[valid-type]
    compile: Switch = Switch.auto  # type: ignore[valid-type]
    data_on_device: Switch = Switch.auto  # type: ignore[valid-type]
    augment: List[AugmentPolicy] = field(default_factory=list)  # type: ignore[valid-type]


@dataclass
class MetricsConfig:
    metrics: Optional[List[str]] = None
    n: Optional[int] = None
    backbone: Backbone = Backbone.lenet  # type: ignore[valid-type]
    seed: int = 0
    inception_weights: Optional[str] = None


@dataclass
class TrainEvalConfig(MetricsConfig):
    every: int = 0
    best: Optional[str] = None


@dataclass
class GanConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: TrainEvalConfig = field(default_factory=TrainEvalConfig)
    seed: int = 0
    device: str = "auto"
    resume: Optional[str] = None


@dataclass
class SampleConfig:
    ckpt: str = MISSING
    n: int = 64
    seed: int = 0
    out: Optional[str] = None
    nrow: Optional[int] = None
    device: str = "auto"
    mode: SampleMode = SampleMode.grid  # type: ignore[valid-type]
    labels: Optional[List[int]] = None
    seeds: Optional[List[int]] = None
    ema: bool = True
    truncation: Optional[float] = None


@dataclass
class EvalConfig(MetricsConfig):
    ckpt: str = MISSING
    reference: Optional[str] = None
    device: str = "auto"
    ema: bool = True
    truncation: Optional[float] = None


def register_schemas() -> None:
    """Make the schemas known to Hydra under the names the top-level YAML files use, and the `pid` resolver
    that makes run directories unique (two runs started in the same second by two processes)."""
    OmegaConf.register_new_resolver("pid", lambda: os.getpid(), use_cache=True, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="gan_schema", node=GanConfig)
    cs.store(name="sample_schema", node=SampleConfig)
    cs.store(name="eval_schema", node=EvalConfig)


def config_dir() -> Path:
    """The folder holding train.yaml: inside the package after a wheel install, else the repo's conf/."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise RuntimeError(f"gan_cli is installed without its configs (looked in {package}/conf and {package.parent}/conf)")


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python containers: safe to store in a weights_only checkpoint."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def upgrade_saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config with today's defaults for the keys added since it was written.

    Options are added with defaults that keep the old behaviour (`g_norm=batch`, `cond=none`,
    `penalty_every=1`, ...), so filling them in lets `gan sample`, `gan eval` and `resume` read
    checkpoints from earlier versions; where a new default changed it (ACGAN's `aux_on_fake`), the old
    value is filled in, so resuming such a run with today's default is refused by name, never silently changed. A key that no longer exists cannot be interpreted,
    which is a clear error rather than a guess.
    """
    loss = saved.get("loss") or {}
    if saved.get("model", {}).get("cond") == "acgan" and "aux_on_fake" not in loss:
        # the one added key whose default changed behaviour: ACGAN's head used to learn from the fakes too
        saved = {**saved, "loss": {**loss, "aux_on_fake": True}}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(GanConfig), saved)
    except (ConfigKeyError, ValidationError) as exc:
        raise GanError(
            f"The checkpoint's config does not fit this version of gan ({str(exc).splitlines()[0]}); "
            "sample or resume it with the gan version that wrote it."
        ) from exc
    return OmegaConf.to_container(merged, resolve=True, enum_to_str=True)  # type: ignore[return-value]
