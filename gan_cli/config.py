"""Typed schemas for every config the `gan` commands compose.

Hydra merges the YAML files of `conf/` onto these dataclasses, so a typo in a key
(`train.stpes=5`) or a wrong type (`train.steps=abc`) fails before any work starts, with
OmegaConf naming the key. The YAML files hold the defaults users read and override; these
classes only say which keys exist and what type each one has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from gan_cli.errors import GanError


@dataclass
class ModelConfig:
    name: str = MISSING
    z_dim: int = 100
    g_width: int = 64
    d_width: int = 64
    dropout: float = 0.0
    d_norm: str = "batch"
    init_std: float = 0.02
    g_spectral: bool = False
    g_norm: str = "batch"
    cond: str = "none"
    attention: int = 0
    minibatch: str = "none"
    info_cat: int = 0
    info_cont: int = 0
    ema: float = 0.0
    ema_warmup: bool = True
    pack: int = 1
    g_act: str = "leaky"


@dataclass
class LossConfig:
    objective: str = MISSING
    n_critic: int = 1
    penalty: str = "none"
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
    name: str = MISSING
    lr: float = 2e-4
    lr_d: Optional[float] = None
    lr_g: Optional[float] = None
    betas: List[float] = field(default_factory=lambda: [0.5, 0.999])
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: int = 0


@dataclass
class DatasetConfig:
    name: str = MISSING
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
    amp: str = "auto"
    channels_last: str = "auto"
    compile: str = "auto"
    data_on_device: str = "auto"
    augment: List[str] = field(default_factory=list)


@dataclass
class MetricsConfig:
    metrics: Optional[List[str]] = None
    n: Optional[int] = None
    backbone: str = "lenet"
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
    mode: str = "grid"
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
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


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
    return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]
