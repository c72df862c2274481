"""`gan train --help [overrides]`: for each config group, the option chosen and only the keys that option reads,
with their values in this composition and the comment from the YAML that sets them.

Hydra's own help prints every key of every group, most of which the chosen options ignore (a WGAN-GP run has no
use for `label_smoothing`, an MLP none for `attention`). The registries know which keys each component reads
(`Component.uses`), and the YAML files carry the one-line documentation next to each default, so both are read
from where they live rather than written again here. Where a comment says `<options>`, the values the key accepts
are filled in from the one list that defines them: the group's registry for its selector key (`model.name`, ...),
the schema's Enum for a key with a fixed set of values (`model.d_norm`, the items of `train.augment`).
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from gan_cli.config import GROUP_SCHEMAS, GROUPS, GanConfig, TrainConfig, TrainEvalConfig, choice_values, config_dir
from gan_cli.errors import GanError

OPTIONS = "<options>"  # in a YAML comment: the values the key accepts, filled in by `_with_options`
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w]*):(?P<value>[^#]*?)(?:\s+#\s?(?P<comment>.*))?$")


def yaml_comments(path: Path, section: str | None = None) -> dict[str, str]:
    """key -> the comment on its line, for the top-level keys of a YAML file (or the keys under `section:`)."""
    comments: dict[str, str] = {}
    inside = section is None
    for line in path.read_text().splitlines() if path.is_file() else []:
        m = _KEY_LINE.match(line)
        if not m:
            continue
        depth = len(m["indent"])
        if section is not None and depth == 0:
            inside = m["key"] == section
            continue
        if inside and depth == (0 if section is None else 2) and m["comment"]:
            comments[m["key"]] = m["comment"].strip()
    return comments


def _search_dirs(cfg: DictConfig) -> list[Path]:
    """The user's --config-dir folders (as hydra.searchpath), then gan's own conf/."""
    user = [Path(str(p).removeprefix("file://")) for p in cfg.hydra.searchpath if str(p).startswith("file://")]
    return [*user, config_dir()]


def _options(group: str, dirs: list[Path]) -> list[str]:
    return sorted({p.stem for d in dirs for p in (d / group).glob("*.yaml")})


def _registry(group: str):
    from gan_cli.data.datasets import DATASETS
    from gan_cli.losses import OBJECTIVES
    from gan_cli.models import MODELS
    from gan_cli.optimizers import OPTIMIZERS

    return {"model": MODELS, "loss": OBJECTIVES, "optimizer": OPTIMIZERS, "dataset": DATASETS}[group]


def _shown(value: object) -> str:
    """A value as YAML writes it inline: null, true, 2.0e-4 stays 0.0002, [0.5, 0.999], {}."""
    return (
        yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False).strip().removesuffix("...").strip()
    )


def _with_options(comments: dict[str, str], schema: type, registry=None) -> dict[str, str]:
    """The comments with each `<options>` replaced by the values its key accepts: the registry's names for the
    group's selector key, else the schema's Enum values; ` | ` between them, `,` for a list key (as in [a,b])."""
    hints = typing.get_type_hints(schema)
    filled = {}
    for key, comment in comments.items():
        selector = registry is not None and key == registry.selector
        values = registry.names() if selector else choice_values(schema, key)
        sep = "," if typing.get_origin(hints.get(key)) is list else " | "
        filled[key] = comment.replace(OPTIONS, sep.join(values)) if values else comment
    return filled


def _rows(node: DictConfig, keys: list[str], comments: dict[str, str]) -> list[str]:
    """One line per key: its value in this composition, then its comment."""
    plain = OmegaConf.to_container(node, enum_to_str=True)
    texts = [f"{k}: {_shown(plain[k])}" for k in keys]  # type: ignore[index]
    return [f"  {t:<30} # {comments[k]}" if comments.get(k) else f"  {t}" for k, t in zip(keys, texts)]


def train_help(cfg: DictConfig) -> str:
    """The help text for the composed `gan train` config `cfg` (composed with its hydra node)."""
    choices = cfg.hydra.runtime.choices
    dirs = _search_dirs(cfg)
    lines = [
        *str(cfg.hydra.help.header).rstrip("\n").splitlines(),  # conf/hydra/help/train.yaml
        "",
        "Each group below shows the option chosen and only the keys that option reads, with their values now.",
        "Choose another option with group=option, set a key with group.key=value; `gan train model=mlp --help` shows mlp's keys.",
    ]
    for group in GROUPS:
        node = cfg[group]
        registry = _registry(group)
        try:
            component = registry.of(node)
            keys, what = list(component.uses), (f"your {component.target}" if component.target else "built-in")
        except GanError as err:  # an option that cannot be built still gets its keys shown, with the reason
            keys, what = list(node.keys()), f"cannot be built: {err}"
        base = yaml_comments(config_dir() / "base" / f"{group}.yaml")
        chosen = next(
            (d / group / f"{choices[group]}.yaml" for d in dirs if (d / group / f"{choices[group]}.yaml").is_file()),
            None,
        )
        own = yaml_comments(chosen) if chosen else {}
        lines += ["", f"{group}={choices[group]}  ({what}; options: {', '.join(_options(group, dirs))})"]
        comments = _with_options({**base, **own}, GROUP_SCHEMAS[group], registry)
        lines += _rows(node, [k for k in node.keys() if k in keys], comments)
    train_yaml = config_dir() / "train.yaml"
    for section, schema in (("train", TrainConfig), ("eval", TrainEvalConfig)):
        comments = _with_options(yaml_comments(train_yaml, section), schema)
        lines += ["", f"{section}:", *_rows(cfg[section], list(cfg[section].keys()), comments)]
    run = OmegaConf.masked_copy(cfg, ["seed", "device", "resume"])  # without the hydra node
    lines += ["", "run:", *_rows(run, list(run.keys()), _with_options(yaml_comments(train_yaml), GanConfig))]
    lines += [
        "",
        f"experiment presets (experiment=NAME, paper settings across groups): {', '.join(_options('experiment', dirs))}",
        'Your own model, loss, dataset or optimizer: a YAML with _target_ in a folder of yours, `gan train --config-dir DIR ...` (README "Your own model").',
        "`gan train --cfg job` prints the whole composed config; `gan train --hydra-help` lists Hydra's own flags.",
        "",
        str(cfg.hydra.help.footer).rstrip(),
    ]
    return "\n".join(lines)
