"""What `gan train resume=RUN` may take from a run directory: data, never code.

A run directory may come from anywhere (a colleague's archive, a download), and Hydra can run code named in a
config: `hydra.callbacks.*._target_`, a launcher or sweeper, logging handlers, `hydra.job.env_set`. So a resume
reads a run's saved overrides through an allow-list (gan's own option keys, config-group choices and a user
component's `args`; never anything under `hydra`), takes the saved `--config-dir` only as `file://` folders, and
refuses a composed Hydra node that differs from the one the command alone would give (a group option with
`@package _global_` from a saved folder could set `hydra.*` itself). `_target_` keys go through the rule of
`components.check_checkpoint_targets`, which the caller applies to the composed config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from gan_cli.errors import GanError

# parts of the composed `hydra` node that follow from the overrides themselves, not from what Hydra will run
_DERIVED = ("overrides", "searchpath")


def _refusal(run_dir: Path, where: str, what: str, why: str) -> GanError:
    return GanError(
        f"The run {str(run_dir)!r} saved {what} in {where}, which gan train resume=... does not take from a run directory: {why}. "
        f"A resume takes from a run only gan's own options (config-group choices such as model=dcgan, keys such as train.steps=500, "
        f"and your component's <group>.args.*), because a run directory may come from anywhere and Hydra's settings can run code. "
        f"If you trust this run and want that setting, give it on the command line yourself; otherwise start a new run."
    )


def check_saved_overrides(
    saved: Any, run_dir: Path, where: str, schema_keys: Iterable[str], groups: Iterable[str]
) -> list[str]:
    """The saved overrides as strings, each one checked against the allow-list; anything else is refused whole."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not isinstance(saved, list) or not all(isinstance(o, str) for o in saved):
        raise _refusal(run_dir, where, f"a {type(saved).__name__} of overrides", "it is not a list of key=value texts")
    known, selectable = set(schema_keys), set(groups)
    parser = OverridesParser.create()
    for text in saved:
        try:
            parsed = parser.parse_overrides([text])[0]
        except Exception:
            raise _refusal(run_dir, where, f"the override {text!r}", "it is not an override Hydra can read") from None
        key = parsed.key_or_group
        root = key.split(".")[0].split("/")[0].split("@")[0]
        if root == "hydra" or parsed.is_hydra_override():
            raise _refusal(
                run_dir,
                where,
                f"the override {text!r}",
                "it changes Hydra's own settings (hydra.*), which can name code to run",
            )
        if "@" in key or parsed.package is not None:
            raise _refusal(run_dir, where, f"the override {text!r}", "it places a config at another package (@)")
        if key in selectable and "." not in key or key in known:
            continue
        if root in selectable and (".args." in f"{key}." or key.endswith("._target_") or "._target_." in key):
            continue  # a component's keywords (data) or its _target_ (checked against the allowed modules later)
        raise _refusal(run_dir, where, f"the override {text!r}", f"{key!r} is none of gan's options")
    return list(saved)


def check_saved_searchpath(paths: list[str], run_dir: Path) -> list[str]:
    """The run's --config-dir folders: only `file://` paths (a `pkg://` entry would import a Python package)."""
    for path in paths:
        if not path.startswith("file://"):
            raise _refusal(
                run_dir,
                ".hydra/hydra.yaml",
                f"the config search path {path!r}",
                "only folders (file://...) are read back",
            )
    return paths


_CONFIG_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def saved_config_name(run_dir: Path) -> Any:
    """The primary config the run was composed from (`-cn NAME`; gan's `train` by default), as .hydra/hydra.yaml
    recorded it; None when the file or the key is missing (a run from before it was read back)."""
    from gan_cli.tables import read_yaml

    saved = read_yaml(run_dir / ".hydra" / "hydra.yaml")
    job = ((saved or {}).get("hydra") or {}).get("job") if isinstance(saved, dict) else None
    return job.get("config_name") if isinstance(job, dict) else None


def check_saved_config_name(name: Any, run_dir: Path) -> str:
    """The saved primary config name, when it is one: a plain file name (no folder, no provider such as pkg://), looked
    up only in the run's saved --config-dir folders and gan's conf/."""
    if not isinstance(name, str) or not _CONFIG_NAME.fullmatch(name) or ".." in name:
        raise _refusal(
            run_dir,
            ".hydra/hydra.yaml",
            f"the primary config name {name!r}",
            "a config name is a plain file name of a --config-dir folder (letters, digits, _ . -)",
        )
    return name


def _comparable(hydra_node: dict[str, Any]) -> dict[str, Any]:
    node = {k: v for k, v in hydra_node.items() if k not in _DERIVED}
    # the primary config's name follows from the command line; what that config sets in hydra.* is compared below
    node["job"] = {k: v for k, v in (node.get("job") or {}).items() if k not in ("override_dirname", "config_name")}
    choices = (node.get("runtime") or {}).get("choices") or {}
    node["runtime"] = {"choices": {k: v for k, v in choices.items() if str(k).startswith("hydra/")}}
    return node


def check_hydra_unchanged(own: dict[str, Any], resumed: dict[str, Any], run_dir: Path) -> None:
    """Refuse when what the run directory adds changes the `hydra` node the command alone composes."""
    mine, theirs = _comparable(own), _comparable(resumed)
    if mine == theirs:
        return
    changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    raise _refusal(
        run_dir,
        "its saved config options",
        f"settings of Hydra ({', '.join(f'hydra.{k}' for k in changed)})",
        "a config option of that run sets Hydra's own settings, which can name code to run",
    )
