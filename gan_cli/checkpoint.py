"""Checkpoints: written atomically, read without running code, found from a run directory.

A checkpoint is a plain dict of tensors, numbers, strings and lists (the resolved config
included), so `torch.load(weights_only=True)` can read it: a checkpoint downloaded from the
internet cannot execute anything when `gan` opens it.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from gan_cli.config import upgrade_saved_config
from gan_cli.errors import GanError, shown
from gan_cli.files import replace_atomically

FORMAT = "gan_cli/1"
LAST = "last.pt"
REQUIRED_KEYS = ("step", "config", "data_spec", "models")  # what sample, eval and resume all read


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write to a temp file beside `path`, fsync, then rename: a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda f: torch.save({"format": FORMAT, **payload}, f), binary=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def usable_path(target: str | os.PathLike) -> Path:
    """The path, ~ expanded, once the file system has accepted it: a name too long for it (or a path through
    a file) is an error naming the path, not an OSError from the first is_dir()."""
    p = Path(os.path.expanduser(str(target)))
    try:
        p.exists()
    except OSError as err:
        raise GanError(
            f"The checkpoint path {shown(p)} cannot be used: {err.strerror or err}. Pass a run directory of `gan train` or a .pt file."
        ) from err
    return p


def resolve_checkpoint(target: str | os.PathLike) -> Path:
    """A .pt file as given, or the last.pt of a run directory (or of its checkpoints/ folder)."""
    p = usable_path(target)
    if p.is_dir():
        for candidate in (p / "checkpoints" / LAST, p / LAST):
            if candidate.is_file():
                return candidate
        raise GanError(
            f"No checkpoint in {str(p)!r}: expected {p / 'checkpoints' / LAST}. Pass a run directory of `gan train` or a .pt file."
        )
    if not p.is_file():
        raise GanError(
            f"Checkpoint {str(p)!r} does not exist. Pass a run directory of `gan train` (e.g. outputs/DATE/TIME_PID) or a .pt file in its checkpoints/ folder."
        )
    return p


def run_dir_of(ckpt: Path) -> Path:
    """The run directory a checkpoint belongs to (<run>/checkpoints/x.pt -> <run>)."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


SAFE_MODULES = ("torch", "collections", "_codecs", "numpy")  # what a checkpoint's pickle may name (tensors, dicts)


def foreign_global(path: Path) -> str | None:
    """The first function or class outside torch and the standard containers that the pickle in `path` (a raw pickle
    or torch's zip with its data.pkl) names, read opcode by opcode without running any; None when it names none or
    cannot be parsed."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(name) if name else b""
        else:
            data = path.read_bytes()
        strings: list[str] = []
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                module, name = strings[-2], strings[-1]
            else:
                if isinstance(arg, str):
                    strings.append(arg)
                continue
            if module.split(".")[0] not in SAFE_MODULES:
                return f"{module}.{name}"
    except Exception:  # not a pickle we can read opcode by opcode: say nothing about code
        return None
    return None


def load_checkpoint(target: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path]:
    """(checkpoint dict, its path). Only plain data is unpickled; anything else is refused with a clear message."""
    path = resolve_checkpoint(target)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # the pickle names a function or class to import and call: torch words it "Unsupported global: GLOBAL x.y"
        # or "unsupported GLOBAL x.y whose module x is blocked" (os.system and friends)
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        code = found.group(1) if found else foreign_global(path)  # torch may stop at an opcode before the global
        if code is None:  # garbage that happens to fail in the unpickler: not a checkpoint at all
            raise GanError(
                f"Checkpoint {str(path)!r} is corrupted or not a PyTorch file (its bytes do not unpickle)."
            ) from exc
        raise GanError(
            f"Checkpoint {str(path)!r} holds code: its pickle names {code}, which loading would import and call, "
            f"so it was refused and none of it ran (gan only reads checkpoints with torch.load(weights_only=True): "
            f"tensors and plain data). Use a checkpoint written by `gan train`, and do not load this file elsewhere."
        ) from exc
    except Exception as exc:  # torch's reader fails on arbitrary bytes in many ways (zip, EOF, index, value errors)
        detail = (str(exc).splitlines() or [""])[0][:200]
        raise GanError(
            f"Checkpoint {str(path)!r} is corrupted or not a PyTorch file ({type(exc).__name__}{': ' + detail if detail else ''})."
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise GanError(
            f"{str(path)!r} is a PyTorch file but not a gan checkpoint (expected format {FORMAT!r}). Pass a checkpoint written by `gan train`."
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt] + (
        ["models.G"] if isinstance(ckpt.get("models"), dict) and "G" not in ckpt["models"] else []
    )
    if missing:
        raise GanError(
            f"Checkpoint {str(path)!r} is incomplete: it lacks {', '.join(missing)}. It was edited or cut short; use another checkpoint of the run (checkpoints/step_*.pt)."
        )
    config = ckpt["config"]
    problem = _not_a_mapping(config)  # before the upgrade reads it
    if problem:
        raise malformed(path, problem)
    ckpt["config"] = upgrade_saved_config(config)
    return ckpt, path


CONFIG_GROUPS = ("model", "dataset", "loss", "optimizer", "train", "eval", "dist")  # each a mapping of options
SELECTORS = ("model.name", "dataset.name", "loss.objective")  # what sample, eval and a resume rebuild the run from
RESUMED = ("optimizers", "fixed_z", "rng", "batches_done")  # what a resume reads beyond what sample and eval read


def malformed(path: Path, problem: str) -> GanError:
    return GanError(
        f"Checkpoint {str(path)!r} is malformed: {problem}. It was edited or written by another program; use another "
        f"checkpoint of the run (checkpoints/step_*.pt) or one written by `gan train`."
    )


def _not_a_mapping(config: Any) -> str | None:
    if not isinstance(config, dict):
        return f"its config is {_kind(config)}, not a mapping of options"
    group = next((g for g in CONFIG_GROUPS if not isinstance(config.get(g, {}), dict)), None)
    return f"its config.{group} is {_kind(config[group])}, not a mapping of options" if group else None


def _kind(value: Any) -> str:
    """A value a message can show: 'a list', 'null', "'abc' (a str)"."""
    if value is None or isinstance(value, (dict, list, tuple)):
        return "null" if value is None else f"a {type(value).__name__}"
    return "missing" if value == "???" else f"{repr(value)[:60]} (of type {type(value).__name__})"


def check_layout(ckpt: dict[str, Any], path: Path, resume: bool = False) -> None:
    """Refuse, by what is wrong, a checkpoint (as `load_checkpoint` returned it) whose parts have not the types `gan
    train` writes, before sample, eval or a resume reads them: a hand-edited or foreign file failed deep inside, in
    whatever line first touched the odd part. `resume`: also the training state a resume restores."""
    problem = _layout_problem(ckpt, resume)
    if problem:
        raise malformed(path, problem)


def _layout_problem(ckpt: dict[str, Any], resume: bool) -> str | None:
    step = ckpt["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"its step is {_kind(step)}, not a count of steps"
    for key in SELECTORS:
        group, name = key.split(".")
        if not isinstance(ckpt["config"][group].get(name), str) or ckpt["config"][group][name] == "???":
            return f"its config names no {key} (it is {_kind(ckpt['config'][group].get(name))}), which a run is rebuilt from"
    spec = ckpt["data_spec"]
    if not (
        isinstance(spec, dict)
        and isinstance(spec.get("name"), str)
        and isinstance(spec.get("shape"), (list, tuple))
        and len(spec["shape"]) in (1, 3)
        and all(isinstance(n, int) and n > 0 for n in spec["shape"])
        and isinstance(spec.get("num_classes"), int)
        and spec["num_classes"] >= 0
    ):
        return f"its data_spec is {_kind(spec)}, not {{'name': str, 'shape': [C, H, W] or [d], 'num_classes': int}}"
    models = ckpt["models"]
    if not isinstance(models, dict):
        return f"its models is {_kind(models)}, not a mapping of the networks' state dicts"
    for name in ("G", "D", *models):
        if not isinstance(models.get(name), dict) or not all(isinstance(k, str) for k in models[name]):
            return f"its models.{name} is {_kind(models.get(name))}, not a state dict (parameter names to tensors)"
    if not resume:
        return None
    lacking = [k for k in RESUMED if k not in ckpt]
    if lacking:
        return f"it lacks {', '.join(lacking)}, the training state a resume restores (gan sample and gan eval can still read it)"
    optimizers, rng = ckpt["optimizers"], ckpt["rng"]
    if not isinstance(optimizers, dict) or not all(
        isinstance(optimizers.get(k), dict) and isinstance(optimizers[k].get("param_groups"), list) for k in ("G", "D")
    ):
        return "its optimizers are not the state dicts of G's and D's optimizers"
    if (
        not isinstance(ckpt["fixed_z"], torch.Tensor)
        or not isinstance(rng, dict)
        or not isinstance(rng.get("torch"), torch.Tensor)
    ):
        return "its fixed_z or rng is not the tensor a resume restores"
    batches = ckpt["batches_done"]
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 0:
        return f"its batches_done is {_kind(batches)}, not a count of batches"
    return None
