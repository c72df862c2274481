"""The jobs a sweep planned, read from the `multirun.yaml` Hydra writes into the sweep directory before the first job
starts: a sweep stopped by Ctrl-C or `kill -9` leaves no folder for the jobs it never reached, and only this file
says they were meant to run."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Optional

from gan_cli.tables import read_yaml

JOB_SUBDIR = "${hydra.job.num}"  # conf/hydra/output/train.yaml: job N runs in <sweep dir>/N


def planned_jobs(sweep_dir: Path) -> Optional[list[list[str]]]:
    """Each planned job's swept overrides (`['loss=ns', 'optimizer.lr=0.0001']`), job 0 first, in the order Hydra's
    basic sweeper runs them (every combination, the first swept key varying slowest). None when the plan cannot be
    known from the file: no multirun.yaml, a search (Optuna) whose trials are chosen as it runs, values it lists
    only while it runs (glob), or job folders named other than by their number."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    saved = read_yaml(Path(sweep_dir) / "multirun.yaml")
    hydra = saved.get("hydra") if isinstance(saved, dict) else None
    if not isinstance(hydra, dict):
        return None
    sweeper = hydra.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith(".BasicSweeper") or sweeper.get("params"):
        return None
    if (hydra.get("sweep") or {}).get("subdir") != JOB_SUBDIR:
        return None
    task = (hydra.get("overrides") or {}).get("task") or []
    try:
        parsed = OverridesParser.create().parse_overrides([str(t) for t in task])
    except Exception:  # a file edited by hand: no plan to read
        return None
    swept = [(str(o.input_line), o) for o in parsed if o.is_sweep_override()]
    if not all(isinstance(o.value(), (ChoiceSweep, RangeSweep)) for _, o in swept):
        return None
    return basic_sweep(swept)


def basic_sweep(overrides: list[tuple[str, Any]]) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of (override as typed, parsed override) pairs: one per combination of
    the swept values, the first swept key varying slowest; an override that sweeps nothing is in every job as typed."""
    choices = []
    for line, o in overrides:
        if not o.is_sweep_override():
            choices.append([line])
            continue
        key = o.input_line.split("=", 1)[0]
        choices.append([f"{key}={v}" for v in o.sweep_string_iterator()])
    return [list(job) for job in itertools.product(*choices)]


def never_ran(sweep_dir: Path) -> list[str]:
    """'N (key=value ...)' for each job the sweep planned that has no folder: it never started."""
    jobs = planned_jobs(sweep_dir)
    if not jobs:
        return []
    return [
        f"{n} ({' '.join(job)})" if job else str(n) for n, job in enumerate(jobs) if not (sweep_dir / str(n)).is_dir()
    ]
