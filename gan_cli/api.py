"""gan from Python (a notebook, a script): `train(overrides) -> Run`, `load(run_dir) -> Run`, and on a Run
`.sample()`, `.evaluate()`, `.export()`.

Nothing here is a second way to train or sample. `train` hands its overrides to the same pipeline `gan train`
runs (`arguments.prepare`: the pre-check, the refusals, resume) and then to the same Hydra app in this process,
so the run directory, its lock, status.json and train.log come out as the command makes them. `Run.sample`,
`.evaluate` and `.export` fill in the options of `gan sample`, `gan eval` and `gan export` from their YAML
defaults and call the commands' own functions. A user's mistake raises `GanError` (one paragraph), as the
command would print it, instead of ending the process.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan_cli.arguments import config_dir_arguments, prepare
from gan_cli.checkpoint import load_checkpoint, resolve_checkpoint, run_dir_of
from gan_cli.cli import train_app
from gan_cli.composition import compose_config, override_key
from gan_cli.config import command_defaults
from gan_cli.errors import GanError
from gan_cli.rundir import hydra_value, override, read_status

Overrides = Union[Sequence[str], dict[str, Any], None]


def _arguments(overrides: Overrides) -> list[str]:
    """`["model=dcgan", "train.steps=100"]` as given; `{"model": "dcgan", "train": {"steps": 100}}` as key=value."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise GanError(
            f"train() takes a list of overrides or a dict, not the string {overrides!r}: "
            f"train([{overrides!r}]) or train({{'key': value}})."
        )
    if not isinstance(overrides, dict):
        return [str(o) for o in overrides]
    args = []

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                add(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, str):
            args.append(override(prefix, value))
        else:
            args.append(f"{prefix}={hydra_value(value)}")

    add("", overrides)
    return args


def _new_run_dir(args: list[str]) -> str:
    """The directory `gan train` would name for this run (outputs/DATE/TIME_PID), made unique: two runs started by
    one process in the same second would otherwise share it."""
    base = str(compose_config("train", args, with_hydra=True).hydra.run.dir)
    found, n = base, 1
    while os.path.lexists(found):
        n += 1
        found = f"{base}_{n}"
    return found


@contextlib.contextmanager
def _as_command(command: str, args: list[str]) -> Iterator[None]:
    """sys.argv as Hydra's app reads it; HYDRA_FULL_ERROR so an error inside Hydra is raised, not printed and exited."""
    saved_argv, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = [f"gan-{command}", *args]
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        sys.argv = saved_argv
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env


def train(overrides: Overrides = None, config_dir: Optional[Union[str, os.PathLike]] = None) -> Run:
    """Train one run as `gan train OVERRIDES` would (`config_dir`: as `--config-dir`); the finished Run.

    The run directory is `hydra.run.dir` when given (refused if it holds a run), the run's own for `resume=`,
    else a new outputs/DATE/TIME_PID. A sweep (several values for a key) is the command's: `gan train -m ...`."""
    args = _arguments(overrides)
    flags = [a for a in args if a.startswith("-")]
    if flags:
        raise GanError(
            f"train() takes overrides (key=value), not the flag {flags[0]!r}: a sweep is `gan train -m ...` on the "
            f"command line, and --config-dir is train(..., config_dir=DIR)."
        )
    keys = {override_key(a) for a in args}
    if config_dir is not None:  # as the command turns --config-dir DIR into hydra.searchpath
        args = config_dir_arguments(["--config-dir", os.fspath(config_dir), *args])
    if "hydra.run.dir" not in keys and "resume" not in keys:
        args.append(override("hydra.run.dir", _new_run_dir(args)))
    prepared = prepare("train", args)
    if prepared is None:  # --help, which train() never passes
        raise GanError("train() was given --help; help is `gan train --help` on the command line.")
    if any(a in ("-m", "--multirun") for a in prepared):
        raise GanError("train() runs one run; a sweep is `gan train -m ...` on the command line.")
    run_dir = Path(str(compose_config("train", prepared, with_hydra=True).hydra.run.dir))
    with _as_command("train", prepared):
        try:
            train_app()
        except SystemExit as stop:  # the job's GanError, reported by the app, which then exits with its code
            if isinstance(stop.__context__, GanError):
                raise stop.__context__ from None
            if stop.code not in (0, None):
                raise GanError(f"gan train stopped with exit code {stop.code}; {run_dir}/train.log says why.") from stop
    return Run(run_dir.resolve())


def load(run_dir: Union[str, os.PathLike]) -> Run:
    """The Run in `run_dir` (a run directory, or one of its checkpoints), refused when it holds no checkpoint."""
    return Run(run_dir_of(resolve_checkpoint(run_dir)).resolve())


def _options(command: str, values: dict[str, Any]) -> DictConfig:
    """`gan <command>`'s options: its YAML defaults with `values` on top, checked by its schema as Hydra would."""
    try:
        return OmegaConf.merge(command_defaults(command), {k: v for k, v in values.items()})  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        first = str(exc).splitlines()[0]
        raise GanError(f"{first}. The options of gan {command} are listed by `gan {command} --help`.") from exc


@dataclass(frozen=True)
class Run:
    """One run directory: what `gan sample`, `gan eval` and `gan export` take as ckpt=, with their options as keywords."""

    dir: Path

    @property
    def checkpoint(self) -> Path:
        """checkpoints/last.pt."""
        return resolve_checkpoint(self.dir)

    @property
    def config(self) -> DictConfig:
        """The resolved config the run trained with, as its last checkpoint carries it."""
        return OmegaConf.create(load_checkpoint(self.checkpoint)[0]["config"])

    @property
    def status(self) -> dict[str, Any]:
        """status.json: how the run ended (finished, interrupted, failed), its step and time."""
        return read_status(self.dir)

    @property
    def metrics(self) -> dict[str, Any]:
        """Every score `gan eval` (or Run.evaluate) wrote for this run: name -> {value, step, protocol, ...}."""
        from gan_cli.evaluate import read_metrics

        return dict(read_metrics(self.dir / "metrics.json").get("all_scores", {}))

    def sample(
        self,
        n: int = 64,
        seed: int = 0,
        labels: Optional[Sequence[int]] = None,
        truncation: Optional[float] = None,
        **options: Any,
    ) -> torch.Tensor:
        """Samples as `gan sample` draws them (images in [-1, 1], or points), on the CPU; `options`: any other key of
        gan sample (mode, seeds, nrow, ema, upscale, device, allow_targets). Nothing is written."""
        from gan_cli.runtime import load_generator, pick_device
        from gan_cli.sample import check_options, draw

        given = {"n": n, "seed": seed, "labels": list(labels) if labels is not None else None}
        cfg = _options("sample", {"ckpt": str(self.dir), **given, "truncation": truncation, **options})
        check_options(cfg)
        device = pick_device(cfg.device)
        G, _, _, _ = load_generator(cfg.ckpt, device, cfg.ema, cfg.allow_targets)
        return draw(cfg, G, device)[0]

    def evaluate(self, metrics: Optional[Sequence[str]] = None, n: Optional[int] = None, **options: Any) -> dict:
        """Scores as `gan eval` computes them (and adds to this run's metrics.json): name -> value; `options`: any
        other key of gan eval (seed, backbone, truncation, ema, device, ...)."""
        from gan_cli.evaluate import evaluate

        values = {"metrics": list(metrics) if metrics is not None else None, "n": n}
        return dict(evaluate(_options("eval", {"ckpt": str(self.dir), **values, **options}))[0]["scores"])

    def export(
        self, out: Optional[Union[str, os.PathLike]] = None, format: str = "torchscript", **options: Any
    ) -> Path:
        """The generator as one file, as `gan export` writes it (default <run dir>/generator.pt or .onnx)."""
        from gan_cli.export import export

        given = {"ckpt": str(self.dir), "format": format, "out": os.fspath(out) if out is not None else None}
        return export(_options("export", {**given, **options}))
