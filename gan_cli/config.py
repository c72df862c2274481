"""Typed schemas for every config the `gan` commands compose, and where each default lives.

Hydra merges the YAML files of `conf/` onto these dataclasses, so a typo in a key
(`train.stpes=5`) or a wrong type (`train.steps=abc`) fails before any work starts, with
OmegaConf naming the key. The classes say only which keys exist and what type each one has;
every default is written once, in YAML, next to the comment that explains it:
`conf/base/<group>.yaml` holds the keys a group's options share, each `conf/<group>/<option>.yaml`
states only what differs, and `train.yaml` / `sample.yaml` / `eval.yaml` hold the rest.

Every option with a fixed set of values is an Enum: Hydra then refuses `model.d_norm=btach` while
composing, naming the allowed values, before a run directory or the data exist. The members are
strings (`Choice`), so the code compares them with plain names and checkpoints store plain names
(`to_plain`). Each Enum is the one list of its key's values: `gan train --help` fills in each `<options>` of a
YAML comment from it (`choice_values`), and code that checks a value again reads it (`schedules.SCHEDULES`).
The names that select a component (`model.name`, `loss.objective`, `optimizer.name`, `dataset.name`) are plain
strings checked against the open registries of `gan_cli.components`, since a user's `--config-dir` can add to them.
"""

from __future__ import annotations

import functools
import os
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

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


def values_of(choice: type[Choice]) -> tuple[str, ...]:
    """The allowed values of a choice, in the order the Enum lists them: what consumers check against."""
    return tuple(member.value for member in choice)


DNorm = _choices("DNorm", ("batch", "layer", "spectral", "none"))
GNorm = _choices("GNorm", ("batch", "virtual"))
Conditioning = _choices("Conditioning", ("none", "concat", "projection", "acgan", "cbn", "auto"))
Minibatch = _choices("Minibatch", ("none", "mbdisc", "mbstd"))
GActivation = _choices("GActivation", ("leaky", "relu"))
LevelInput = _choices("LevelInput", ("generated", "real"))
Penalty = _choices("Penalty", ("none", "gp", "dragan", "r1"))
Schedule = _choices("Schedule", ("constant", "linear", "cosine"))
Switch = _choices("Switch", ("auto", "on", "off"))
AmpMode = _choices("AmpMode", ("auto", "bf16", "fp16", "off"))
AugmentPolicy = _choices("AugmentPolicy", ("color", "translation", "cutout"))
DPass = _choices("DPass", ("separate", "joint"))
Backbone = _choices("Backbone", ("lenet", "inception"))
LabelSource = _choices("LabelSource", ("auto", "classes", "clusters", "none"))
DistBackend = _choices("DistBackend", ("auto", "nccl", "gloo"))
SampleMode = _choices("SampleMode", ("grid", "classes", "interp", "arithmetic", "codes", "mix", "pyramid"))
ExportFormat = _choices("ExportFormat", ("torchscript", "onnx"))


@dataclass
class ModelConfig:
    name: str = MISSING
    _target_: Optional[str] = MISSING
    args: dict[str, Any] = MISSING
    z_dim: int = MISSING
    g_width: int = MISSING
    d_width: int = MISSING
    dropout: float = MISSING
    d_norm: DNorm = MISSING  # type: ignore[valid-type]
    init_std: float = MISSING
    g_spectral: bool = MISSING
    g_norm: GNorm = MISSING  # type: ignore[valid-type]
    cond: Conditioning = MISSING  # type: ignore[valid-type]
    attention: int = MISSING
    minibatch: Minibatch = MISSING  # type: ignore[valid-type]
    info_cat: int = MISSING
    info_cont: int = MISSING
    ema: float = MISSING
    ema_warmup: bool = MISSING
    pack: int = MISSING
    g_act: GActivation = MISSING  # type: ignore[valid-type]
    style_mixing: float = MISSING
    levels: int = MISSING
    level_input: LevelInput = MISSING  # type: ignore[valid-type]
    fade_steps: int = MISSING
    stable_steps: int = MISSING


@dataclass
class LossConfig:
    objective: str = MISSING
    _target_: Optional[str] = MISSING
    args: dict[str, Any] = MISSING
    n_critic: int = MISSING
    penalty: Penalty = MISSING  # type: ignore[valid-type]
    penalty_weight: float = MISSING
    penalty_every: int = MISSING
    clip: Optional[float] = MISSING
    label_smoothing: float = MISSING
    feature_matching: bool = MISSING
    hist_weight: float = MISSING
    ortho_weight: float = MISSING
    aux_weight: float = MISSING
    aux_on_fake: bool = MISSING
    info_weight: float = MISSING
    info_schedule: Schedule = MISSING  # type: ignore[valid-type]
    drift: float = MISSING


@dataclass
class OptimizerConfig:
    name: str = MISSING
    _target_: Optional[str] = MISSING
    args: dict[str, Any] = MISSING
    lr: float = MISSING
    lr_d: Optional[float] = MISSING
    lr_g: Optional[float] = MISSING
    betas: list[float] = MISSING
    momentum: float = MISSING
    weight_decay: float = MISSING
    schedule: Schedule = MISSING  # type: ignore[valid-type]
    warmup: int = MISSING


@dataclass
class DatasetConfig:
    name: str = MISSING
    _target_: Optional[str] = MISSING
    args: dict[str, Any] = MISSING
    root: Optional[str] = MISSING
    download: bool = MISSING
    path: Optional[str] = MISSING
    image_size: Optional[int] = MISSING
    channels: int = MISSING
    n: int = MISSING
    std: Optional[float] = MISSING
    limit: Optional[int] = MISSING
    labels: LabelSource = MISSING  # type: ignore[valid-type]
    clusters: int = MISSING


@dataclass
class TrainConfig:
    steps: int = MISSING
    batch_size: int = MISSING
    log_every: int = MISSING
    sample_every: int = MISSING
    ckpt_every: int = MISSING
    keep_ckpts: Optional[int] = MISSING
    n_samples: int = MISSING
    num_workers: int = MISSING
    threads: Optional[int] = MISSING
    amp: AmpMode = MISSING  # type: ignore[valid-type]
    channels_last: Switch = MISSING  # type: ignore[valid-type]
    compile: Switch = MISSING  # type: ignore[valid-type]
    data_on_device: Switch = MISSING  # type: ignore[valid-type]
    augment: list[AugmentPolicy] = MISSING  # type: ignore[valid-type]
    d_pass: DPass = MISSING  # type: ignore[valid-type]
    health: bool = MISSING


@dataclass
class DistConfig:
    nproc_per_node: int = MISSING
    backend: DistBackend = MISSING  # type: ignore[valid-type]
    sync_bn: Switch = MISSING  # type: ignore[valid-type]
    timeout: float = MISSING


@dataclass
class MetricsConfig:
    metrics: Optional[list[str]] = MISSING
    n: Optional[int] = MISSING
    backbone: Backbone = MISSING  # type: ignore[valid-type]
    seed: int = MISSING
    inception_weights: Optional[str] = MISSING


@dataclass
class TrainEvalConfig(MetricsConfig):
    every: int = MISSING
    best: Optional[str] = MISSING


@dataclass
class GanConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: TrainEvalConfig = field(default_factory=TrainEvalConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    seed: int = MISSING
    device: str = MISSING
    resume: Optional[str] = MISSING


@dataclass
class SampleConfig:
    ckpt: str = MISSING
    n: int = MISSING
    seed: int = MISSING
    out: Optional[str] = MISSING
    nrow: Optional[int] = MISSING
    device: str = MISSING
    mode: SampleMode = MISSING  # type: ignore[valid-type]
    labels: Optional[list[int]] = MISSING
    seeds: Optional[list[int]] = MISSING
    ema: bool = MISSING
    truncation: Optional[float] = MISSING
    allow_targets: list[str] = MISSING
    upscale: bool = MISSING


@dataclass
class EvalConfig(MetricsConfig):
    ckpt: str = MISSING
    reference: Optional[str] = MISSING
    device: str = MISSING
    ema: bool = MISSING
    truncation: Optional[float] = MISSING
    allow_targets: list[str] = MISSING


@dataclass
class ExportConfig:
    ckpt: str = MISSING
    format: ExportFormat = MISSING  # type: ignore[valid-type]
    out: Optional[str] = MISSING
    ema: bool = MISSING
    upscale: bool = MISSING
    allow_targets: list[str] = MISSING


COMMAND_SCHEMAS: dict[str, type] = {
    "train": GanConfig,
    "sample": SampleConfig,
    "eval": EvalConfig,
    "export": ExportConfig,
}


def register_schemas() -> None:
    """Make the schemas known to Hydra under the names the top-level YAML files use, and the `pid` resolver
    that makes run directories unique (two runs started in the same second by two processes)."""
    OmegaConf.register_new_resolver("pid", lambda: os.getpid(), use_cache=True, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="gan_schema", node=GanConfig)
    cs.store(name="sample_schema", node=SampleConfig)
    cs.store(name="eval_schema", node=EvalConfig)
    cs.store(name="export_schema", node=ExportConfig)


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


GROUPS = ("model", "loss", "optimizer", "dataset")  # the config groups whose options are components
GROUP_SCHEMAS: dict[str, type] = {
    "model": ModelConfig,
    "loss": LossConfig,
    "optimizer": OptimizerConfig,
    "dataset": DatasetConfig,
}


def choice_values(schema: type, key: str) -> Optional[tuple[str, ...]]:
    """The values `key` of a schema class accepts when they are a fixed set: its Enum's (or, for a list, its items'),
    in the order the Enum lists them; None for a key of any other type."""
    hint = typing.get_type_hints(schema).get(key)
    if typing.get_origin(hint) in (list, typing.Union):
        hint = next((a for a in typing.get_args(hint) if a is not type(None)), None)
    if isinstance(hint, type) and issubclass(hint, Choice):
        return tuple(member.value for member in hint)
    return None


def yaml_values(path: Path) -> DictConfig:
    """A YAML file's own keys, without Hydra's `defaults` list and `hydra` settings."""
    cfg = OmegaConf.load(path)
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k not in ("defaults", "hydra")])  # type: ignore[arg-type]


@functools.cache
def base_values(group: str) -> DictConfig:
    """conf/base/<group>.yaml: the default of every key the group's options share."""
    return yaml_values(config_dir() / "base" / f"{group}.yaml")


def group_defaults(group: str) -> DictConfig:
    """A group's schema with its base defaults: every shared key set, the selector (`name`, `objective`) missing."""
    return OmegaConf.merge(OmegaConf.structured(GROUP_SCHEMAS[group]), base_values(group))


def option_config(group: str, name: str) -> DictConfig:
    """`conf/<group>/<name>.yaml` on its group's base and schema: the option as `gan train <group>=<name>` composes it."""
    return OmegaConf.merge(group_defaults(group), yaml_values(config_dir() / group / f"{name}.yaml"))


def command_defaults(command: str) -> DictConfig:
    """Every key of `gan sample` / `gan eval` at its default (the mandatory `ckpt` left missing)."""
    return OmegaConf.merge(
        OmegaConf.structured(COMMAND_SCHEMAS[command]), yaml_values(config_dir() / f"{command}.yaml")
    )


def train_defaults() -> DictConfig:
    """The value every `gan train` key takes when no option sets it: the group bases and train.yaml's own keys.
    A checkpoint written before a key existed gets this value for it (`upgrade_saved_config`)."""
    bases = {group: base_values(group) for group in GROUPS}
    return OmegaConf.merge(OmegaConf.structured(GanConfig), bases, yaml_values(config_dir() / "train.yaml"))


def upgrade_saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config with today's defaults for the keys added since it was written.

    Options are added with base defaults that keep the old behaviour (`g_norm=batch`, `cond=none`,
    `penalty_every=1`, `_target_=null`, ...; `conf/base/`), so filling them in lets `gan sample`, `gan eval` and `resume` read
    checkpoints from earlier versions; where a new default changed it (ACGAN's `aux_on_fake`), the old
    value is filled in, so resuming such a run with today's default is refused by name, never silently changed. A key that no longer exists cannot be interpreted,
    which is a clear error rather than a guess.
    """
    loss = saved.get("loss") or {}
    if saved.get("model", {}).get("cond") == "acgan" and "aux_on_fake" not in loss:
        # the one added key whose default changed behaviour: ACGAN's head used to learn from the fakes too
        saved = {**saved, "loss": {**loss, "aux_on_fake": True}}
    try:
        merged = OmegaConf.merge(train_defaults(), saved)
    except (ConfigKeyError, ValidationError) as exc:
        raise GanError(
            f"The checkpoint's config does not fit this version of gan ({str(exc).splitlines()[0]}); "
            "sample or resume it with the gan version that wrote it."
        ) from exc
    return OmegaConf.to_container(merged, resolve=True, enum_to_str=True)  # type: ignore[return-value]
