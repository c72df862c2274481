"""What `gan report` reads from run directories, and the report it builds: one row per run, ranked by a score."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from gan_cli.errors import GanError, shown
from gan_cli.metrics.scorer import HIGHER, NEAR_ONE, direction_of
from gan_cli.report.planned import never_ran
from gan_cli.rundir import is_locked, read_status_checked
from gan_cli.tables import read_overrides, read_yaml, split_overrides

STATUSES = ("finished", "interrupted", "diverged", "failed", "running")
LOSS_TAGS = ("loss/D", "loss/G", "D(x)", "D(G(z))")
FORMATS = (".md", ".csv", ".json")
OPTIONS = ("sort", "out", "plots")


@dataclass
class RunRow:
    """One run as the report shows it."""

    path: Path
    label: str
    overrides: dict[str, str]
    status: str
    reason: str = ""
    exit_code: int = 0
    step: Optional[int] = None
    steps: Optional[int] = None
    seconds: Optional[float] = None
    final: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    score_steps: dict[str, Optional[int]] = field(default_factory=dict)  # the checkpoint step each score came from
    best_name: Optional[str] = None  # the run's eval.best
    rank: Optional[int] = None  # among the runs of the same data only
    data: str = "-"  # what its scores compare against: the dataset and image size ('mnist5k 28px')
    warnings: Optional[list[dict[str, Any]]] = None  # the health detectors' (status.json); None: not recorded

    @property
    def health(self) -> str:
        """The report's health cell: 'ok', the fired detectors with the step each began at, or '-' (not recorded)."""
        if self.warnings is None:
            return "-"
        return ", ".join(f"{w.get('name')}@{w.get('since')}" for w in self.warnings) or "ok"


@dataclass
class Report:
    runs: list[RunRow]
    shared: dict[str, str]  # overrides every run has, with the same value
    varied: list[str]  # override keys whose values differ between runs (or that some runs lack)
    sort: Optional[str]  # the score the runs are ranked by; None: no run has a score
    direction: Optional[str]
    never_started: list[str] = field(default_factory=list)  # labels of run directories left before training began
    never_ran: list[str] = field(default_factory=list)  # a stopped sweep's planned jobs that have no directory
    data: list[str] = field(default_factory=list)  # the datasets and sizes of the runs; ranked apart when several

    @property
    def best(self) -> Optional[RunRow]:
        return next((r for r in self.runs if r.rank == 1), None)

    @property
    def bests(self) -> list[RunRow]:
        """The best run of each dataset and size."""
        return [r for r in self.runs if r.rank == 1]

    @property
    def failed(self) -> list[RunRow]:
        return [r for r in self.runs if r.status in ("failed", "diverged")]

    def score_names(self) -> list[str]:
        names = list(dict.fromkeys(k for r in self.runs for k in r.scores))
        return ([self.sort] if self.sort in names else []) + [n for n in names if n != self.sort]


# ---------------------------------------------------------------------------------------------
# reading run directories
# ---------------------------------------------------------------------------------------------
def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file() or (path / "train.log").is_file()


def find_runs(targets: Sequence[str]) -> list[Path]:
    """Run directories: each target that is one, and every one below a target that is not (a sweep, outputs/DATE)."""
    if not targets:
        raise GanError(
            "gan report needs at least one directory: a multirun (sweep) directory, an outputs/DATE directory or run directories."
        )
    runs: list[Path] = []
    for target in targets:
        path = Path(os.path.expanduser(target))
        if not path.is_dir():
            raise GanError(
                f"gan report: {shown(target)} is not a directory. Pass a multirun directory, an outputs/DATE directory or run directories."
            )
        if is_run_dir(path):
            runs.append(path)
            continue
        found = sorted(
            {c.parent.parent for c in path.rglob(".hydra/config.yaml") if c.parent.parent.name != "resumes"},
            key=_natural,
        )
        found = [r for r in found if ".hydra" not in r.parts]  # not a resume's record inside a run's .hydra/
        if not found:
            raise GanError(
                f"gan report: no run directories under {shown(target)} (a run directory holds .hydra/config.yaml and train.log)."
            )
        runs.extend(found)
    return list(dict.fromkeys(p.resolve() for p in runs))


def _natural(path: Path) -> list[Any]:
    """Sweep job 10 after job 9."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def error_line(run: Path) -> str:
    """The last ERROR line of train.log, without its time stamp: why the run stopped."""
    try:
        lines = (run / "train.log").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line.split("[ERROR] ", 1)[1] for line in lines if "[ERROR] " in line]
    return errors[-1].strip() if errors else ""


_FINISHED = re.compile(r"finished at step (\d+) after ([\d.]+) s")
_PROGRESS = re.compile(r"\] step \d+/\d+\b")


def never_started(run: Path) -> bool:
    """A run directory that Hydra made but no training filled: no checkpoint, no status.json, no scores, no
    TensorBoard events, and in train.log no progress, end or error line; nobody training there (a Ctrl-C or a kill
    during set-up). Not a run to rank or to count as failed. A directory whose train.log holds an error (a run from
    before status.json, or one refused before it could write it) stays a failed row, with that error as its reason."""
    kept = ("status.json", "metrics.jsonl", "metrics.json")
    if any((run / name).exists() for name in kept) or any((run / "checkpoints").glob("*.pt")):
        return False
    if any(run.glob("events.out.tfevents.*")):
        return False
    try:
        log = (run / "train.log").read_text(errors="replace")
    except OSError:
        log = ""
    return not ("[ERROR] " in log or _PROGRESS.search(log) or _FINISHED.search(log)) and is_locked(run) is None


def read_run(run: Path, label: str) -> RunRow:
    """Status, steps, time, final scalars and scores of one run directory."""
    config = read_yaml(run / ".hydra" / "config.yaml") or {}
    status, problem = read_status_checked(run)
    row = RunRow(
        run, label, read_overrides(run), status=str(status.get("status", "")), reason=str(status.get("reason", ""))
    )
    row.exit_code = int(status.get("exit_code", 0) or 0)
    row.step, row.seconds = status.get("step"), status.get("seconds")
    row.steps = status.get("steps") or (config.get("train") or {}).get("steps")
    final = (status.get("final") or {}).items()  # status.json writes a NaN as null
    row.final = {k: math.nan if v is None else float(v) for k, v in final if k in LOSS_TAGS}
    row.best_name = (config.get("eval") or {}).get("best")
    warnings = status.get("warnings")
    row.warnings = [w for w in warnings if isinstance(w, dict)] if isinstance(warnings, list) else None
    row.data = data_of(config.get("dataset"))
    killed = False
    if is_locked(run) is not None:
        row.status = "running"
    elif row.status == "running":  # status.json says running, but nobody holds the lock: the process was killed
        killed = True
        row.status, row.reason = (
            "interrupted",
            f"killed while training (status.json still says running, from step {row.step}); "
            "resume it from its last checkpoint",
        )
    elif problem:  # never guessed from train.log: the record of how the run ended is there, but unreadable
        row.status, row.reason = "unreadable", f"{problem}; gan report shows what the run's other files say"
    elif not row.status:  # no status.json: a run from before gan wrote one, or one killed before it could
        reason = error_line(run)
        finished = (
            _FINISHED.findall((run / "train.log").read_text(errors="replace")) if (run / "train.log").is_file() else []
        )
        if reason:
            row.status, row.reason, row.exit_code = "failed", reason, 1
        elif finished:
            row.status, row.step, row.seconds = "finished", int(finished[-1][0]), float(finished[-1][1])
        else:
            row.status, row.reason = (
                "interrupted",
                "ended without a record of how (killed?); resume it from its last checkpoint",
            )
    if row.reason and not killed and not problem:
        row.reason = error_line(run) or row.reason  # the log's line is the one the user saw
    if not row.final or row.step is None:
        curves = read_curves(run, LOSS_TAGS)
        row.final = row.final or {tag: values[-1] for tag, (_, values) in curves.items()}
        if row.step is None and curves:
            row.step = max(steps[-1] for steps, _ in curves.values())
    row.scores, row.score_steps = read_scores(run)
    return row


def data_of(dataset: Any) -> str:
    """What a run's scores compare against, as the report shows it: the dataset, the folder of an image_folder (or
    the target of a user's dataset) and the image size ('mnist5k 28px', 'image_folder /data/digits 8px'); '-' when the
    run's config does not say. Scores of runs on different data are never ranked against each other."""
    from gan_cli.data.datasets import KNOWN_IMAGE_SPECS

    if not isinstance(dataset, dict) or not dataset.get("name"):
        return "-"
    name = str(dataset["name"])
    words = [name]
    if dataset.get("_target_"):
        words.append(str(dataset["_target_"]))
    elif name == "image_folder":
        words.append(str(dataset.get("path")))
        if dataset.get("channels") == 1:
            words.append("grey")
    size = dataset.get("image_size") or (KNOWN_IMAGE_SPECS[name][0][-1] if name in KNOWN_IMAGE_SPECS else None)
    if name == "image_folder" and not size:
        size = 64  # the folder's default side
    return " ".join(words + ([f"{size}px"] if size else []))


def read_scores(run: Path) -> tuple[dict[str, float], dict[str, Optional[int]]]:
    """(scores, the checkpoint step of each): the last line of metrics.jsonl (scores during training) and `gan eval`'s
    metrics.json, each name's value from the later step; on a tie metrics.json wins (the same protocol, asked for
    explicitly). Names carry their protocol, so they never mix."""
    scores: dict[str, float] = {}
    steps: dict[str, Optional[int]] = {}
    try:
        lines = [line for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        last = json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        last = {}
    for k, v in last.items() if isinstance(last, dict) else ():
        if k not in ("step", "seconds", "train_seconds") and (value := _score(v)) is not None:
            scores[k], steps[k] = value, _step(last.get("step"))
    try:
        evaluated = json.loads((run / "metrics.json").read_text()).get("all_scores", {})
    except (OSError, ValueError, AttributeError):
        evaluated = {}
    for k, v in evaluated.items() if isinstance(evaluated, dict) else ():
        if not isinstance(v, dict) or "value" not in v or (value := _score(v["value"])) is None:
            continue
        step, during = _step(v.get("step")), steps.get(k)
        if k not in scores or during is None or step is None or step >= during:
            scores[k], steps[k] = value, step
    return scores, steps


def _step(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _score(value: Any) -> Optional[float]:
    """A score as strict JSON writes it: a number, null for NaN, "inf" / "-inf" for infinities (older files: bare
    NaN and Infinity, which json reads as floats); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if value is None:
        return math.nan
    if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "-inf", "infinity", "-infinity", "nan"):
        return float(value)
    return None


def read_curves(
    run: Path, tags: Optional[Sequence[str]] = None, prefix: str = ""
) -> dict[str, tuple[list[int], list[float]]]:
    """tag -> (steps, values) from the run's TensorBoard event files (all of them: a resumed run has several)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, dict[int, float]] = {}
    for events in sorted(run.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        try:
            acc.Reload()
        except Exception:  # a truncated file from a killed run: what was read so far stays
            pass
        for tag in acc.Tags().get("scalars", []):
            if (tags is not None and tag in tags) or (prefix and tag.startswith(prefix)):
                curves.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return {tag: (sorted(points), [points[s] for s in sorted(points)]) for tag, points in curves.items()}


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
def _labels(runs: list[Path]) -> list[str]:
    """Each run's path relative to what all share ('3' in a sweep, '14-02-11_4242' in outputs/DATE)."""
    if len(runs) == 1:
        return [runs[0].name]
    root = Path(os.path.commonpath([str(r) for r in runs]))
    return [str(r.relative_to(root)) for r in runs]


def _order_value(value: float, direction: Optional[str]) -> float:
    if direction == NEAR_ONE:
        return abs(math.log(value)) if value > 0 else math.inf
    return -value if direction == HIGHER else value


def build_report(targets: Sequence[str], sort: Optional[str] = None) -> Report:
    found = find_runs(targets)
    labelled = list(zip(found, _labels(found)))
    skipped = [label for p, label in labelled if never_started(p)]
    labelled = [(p, label) for p, label in labelled if label not in skipped]
    if not labelled:
        raise GanError(
            f"gan report: none of the {len(found)} run director{'ies' if len(found) != 1 else 'y'} found ever started "
            f"training ({', '.join(skipped[:4])}{' ...' if len(skipped) > 4 else ''}: no checkpoint, no status.json; "
            f"stopped or refused during set-up)."
        )
    runs = [read_run(p, label) for p, label in labelled]
    shared, varied = split_overrides([r.overrides for r in runs])
    available = list(dict.fromkeys(k for r in runs for k in r.scores))
    if sort is not None and sort not in available:
        listed = (
            ", ".join(available) if available else "none (train with eval.every > 0, or score the runs with gan eval)"
        )
        raise GanError(f"sort={sort!r}: no run has this score. Scores found: {listed}.")
    if sort is None:  # the runs' eval.best when they agree, else the first score the runs report
        bests = {r.best_name for r in runs if r.best_name}
        sort = (
            next(iter(bests))
            if len(bests) == 1 and next(iter(bests)) in available
            else (available[0] if available else None)
        )
    direction = direction_of(sort) if sort else None
    data = list(dict.fromkeys(r.data for r in runs))
    ranked = [
        r for r in runs if sort in r.scores and math.isfinite(r.scores[sort]) and r.status not in ("failed", "diverged")
    ]
    # ranks within one dataset and image size: a score of 8-px folder images and one of 28-px digits share a name
    # but not a scale (each has its own classifier and real set)
    ranked.sort(key=lambda r: (data.index(r.data), _order_value(r.scores[sort], direction)))
    for group in data:
        for i, r in enumerate((r for r in ranked if r.data == group), 1):
            r.rank = i
    runs = ranked + [r for r in runs if r.rank is None]
    unreached = [
        f"{'' if len(targets) == 1 else target.rstrip('/') + '/'}{job}"
        for target in targets
        for job in never_ran(Path(target))
    ]
    return Report(runs, shared, varied, sort, direction, never_started=skipped, never_ran=unreached, data=data)
