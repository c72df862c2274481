"""`gan report`: which run of a sweep (or of a day's outputs) did best, and how each one ended.

Everything comes from what a run directory already holds, so a report can be made at any time, of runs
made by any version of gan that writes these files:

- `.hydra/overrides.yaml` and `.hydra/config.yaml`: what the run was asked to do (and its eval.best);
- `status.json`: how the last attempt ended (finished / interrupted / diverged / failed), at which step,
  after how long, with the last logged scalars; `train.log`: the one-line reason of an error;
- `metrics.jsonl` (scores during training) and `metrics.json` (`gan eval`): every score, by its protocol name;
- the TensorBoard event files, read with TensorBoard's own EventAccumulator, for the curves (`plots=true`).

A multirun ends with this report (`SweepReport`, a Hydra callback): on the console, and as report.md in the
sweep directory.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml
from hydra.experimental.callback import Callback
from rich.console import Console

from gan_cli.errors import GanError, shown
from gan_cli.metrics.scorer import HIGHER, NEAR_ONE, direction_of
from gan_cli.rundir import is_locked, read_status, shell_command
from gan_cli.tables import print_columns, read_overrides, split_overrides

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
    best_name: Optional[str] = None  # the run's eval.best
    rank: Optional[int] = None


@dataclass
class Report:
    runs: list[RunRow]
    shared: dict[str, str]  # overrides every run has, with the same value
    varied: list[str]  # override keys whose values differ between runs (or that some runs lack)
    sort: Optional[str]  # the score the runs are ranked by; None: no run has a score
    direction: Optional[str]

    @property
    def best(self) -> Optional[RunRow]:
        return next((r for r in self.runs if r.rank == 1), None)

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


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def error_line(run: Path) -> str:
    """The last ERROR line of train.log, without its time stamp: why the run stopped."""
    try:
        lines = (run / "train.log").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line.split("[ERROR] ", 1)[1] for line in lines if "[ERROR] " in line]
    return errors[-1].strip() if errors else ""


_FINISHED = re.compile(r"finished at step (\d+) after ([\d.]+) s")


def read_run(run: Path, label: str) -> RunRow:
    """Status, steps, time, final scalars and scores of one run directory."""
    config = _read_yaml(run / ".hydra" / "config.yaml") or {}
    status = read_status(run)
    row = RunRow(
        run, label, read_overrides(run), status=str(status.get("status", "")), reason=str(status.get("reason", ""))
    )
    row.exit_code = int(status.get("exit_code", 0) or 0)
    row.step, row.seconds = status.get("step"), status.get("seconds")
    row.steps = status.get("steps") or (config.get("train") or {}).get("steps")
    row.final = {k: float(v) for k, v in (status.get("final") or {}).items() if k in LOSS_TAGS}
    row.best_name = (config.get("eval") or {}).get("best")
    if is_locked(run) is not None:
        row.status = "running"
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
    if row.reason:
        row.reason = error_line(run) or row.reason  # the log's line is the one the user saw
    if not row.final or row.step is None:
        curves = read_curves(run, LOSS_TAGS)
        row.final = row.final or {tag: values[-1] for tag, (_, values) in curves.items()}
        if row.step is None and curves:
            row.step = max(steps[-1] for steps, _ in curves.values())
    row.scores = read_scores(run)
    return row


def read_scores(run: Path) -> dict[str, float]:
    """The last line of metrics.jsonl (scores during training), then `gan eval`'s metrics.json (which wins on a
    name clash: the same protocol, asked for explicitly). Names carry their protocol, so they never mix."""
    scores: dict[str, float] = {}
    try:
        lines = [line for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        last = json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        last = {}
    scores.update(
        {
            k: float(v)
            for k, v in last.items()
            if k not in ("step", "seconds", "train_seconds") and isinstance(v, (int, float))
        }
    )
    try:
        evaluated = json.loads((run / "metrics.json").read_text()).get("all_scores", {})
    except (OSError, ValueError, AttributeError):
        evaluated = {}
    scores.update(
        {
            k: float(v["value"])
            for k, v in evaluated.items()
            if isinstance(v, dict) and isinstance(v.get("value"), (int, float))
        }
    )
    return scores


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
    paths = find_runs(targets)
    runs = [read_run(p, label) for p, label in zip(paths, _labels(paths))]
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
    ranked = [
        r for r in runs if sort in r.scores and math.isfinite(r.scores[sort]) and r.status not in ("failed", "diverged")
    ]
    ranked.sort(key=lambda r: _order_value(r.scores[sort], direction))
    for i, r in enumerate(ranked, 1):
        r.rank = i
    runs = ranked + [r for r in runs if r.rank is None]
    return Report(runs, shared, varied, sort, direction)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.1f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )


def _direction_word(direction: Optional[str]) -> str:
    return {"min": "lower is better", "max": "higher is better", NEAR_ONE: "best at 1"}.get(
        direction or "", "direction unknown"
    )


def columns(report: Report) -> list[tuple[str, list[str]]]:
    """(header, cells) of every column, in the order shown: who, what differs, how it ended, scores, losses."""
    runs = report.runs
    cols = [("#", [str(r.rank) if r.rank else "-" for r in runs]), ("run", [r.label for r in runs])]
    cols += [(k, [r.overrides.get(k, "-") for r in runs]) for k in report.varied]
    cols += [
        ("status", [r.status for r in runs]),
        ("step", [f"{_fmt(r.step)}/{_fmt(r.steps)}" for r in runs]),
        ("time", [_duration(r.seconds) for r in runs]),
    ]
    cols += [
        (name + (" *" if name == report.sort else ""), [_fmt(r.scores.get(name)) for r in runs])
        for name in report.score_names()
    ]
    cols += [(tag, [_fmt(r.final.get(tag)) for r in runs]) for tag in LOSS_TAGS if any(tag in r.final for r in runs)]
    return cols


def next_commands(row: RunRow) -> list[str]:
    """How to use the best run: sample from it, and continue it (a finished run needs more steps to resume)."""
    commands = [shell_command("gan", "sample", f"ckpt={row.path}")]
    if row.status == "finished" and row.steps:
        commands.append(shell_command("gan", "train", f"resume={row.path}", f"train.steps={2 * int(row.steps)}"))
    elif row.status in ("interrupted", "running"):
        commands.append(shell_command("gan", "train", f"resume={row.path}"))
    return commands


def summary_lines(report: Report) -> list[str]:
    lines = []
    if report.sort:
        lines.append(f"ranked by {report.sort} ({_direction_word(report.direction)}); * marks it")
    else:
        lines.append(
            "no scores found: runs in directory order (train with eval.every > 0, or score them with gan eval ckpt=...)"
        )
    best = report.best
    if best is not None and report.sort:
        lines.append(f"best: {best.label} ({report.sort} {_fmt(best.scores[report.sort])}) in {best.path}")
        lines += [f"  {c}" for c in next_commands(best)]
    for r in report.runs:
        if r.reason and r.status != "finished":
            lines.append(f"{r.label} {r.status}: {r.reason}")
    return lines


def print_report(report: Report, console: Optional[Console] = None, title: str = "gan report") -> None:
    console = console or Console()
    console.print(
        f"[bold]{title}[/bold]: {len(report.runs)} run{'s' if len(report.runs) != 1 else ''}", highlight=False
    )
    if report.shared:
        console.print(
            "shared: " + " ".join(f"{k}={v}" for k, v in report.shared.items()), highlight=False, soft_wrap=False
        )
    print_columns(columns(report), console)
    for line in summary_lines(report):
        console.print(line, highlight=False, soft_wrap=True)


def to_markdown(report: Report, title: str = "gan report") -> str:
    cols = columns(report)
    out = [f"# {title}", "", f"{len(report.runs)} runs."]
    if report.shared:
        out += ["", "Shared by every run: " + ", ".join(f"`{k}={v}`" for k, v in report.shared.items()) + "."]
    out += ["", "| " + " | ".join(h for h, _ in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for i in range(len(report.runs)):
        out.append("| " + " | ".join(cells[i].replace("|", "\\|") for _, cells in cols) + " |")
    out += [""] + [
        f"- {line.strip()}" if not line.startswith("  ") else f"  - `{line.strip()}`" for line in summary_lines(report)
    ]
    return "\n".join(out) + "\n"


def to_records(report: Report) -> list[dict[str, Any]]:
    """One flat dict per run, every column a reader may want (CSV and JSON)."""
    records = []
    for r in report.runs:
        records.append(
            {
                "rank": r.rank,
                "run": r.label,
                "path": str(r.path),
                **{k: r.overrides.get(k) for k in report.varied},
                "status": r.status,
                "reason": r.reason,
                "step": r.step,
                "steps": r.steps,
                "seconds": r.seconds,
                **{name: r.scores.get(name) for name in report.score_names()},
                **{tag: r.final.get(tag) for tag in LOSS_TAGS},
            }
        )
    return records


def write_report(report: Report, out: Path, title: str = "gan report") -> Path:
    if out.suffix == ".md":
        text = to_markdown(report, title)
    elif out.suffix == ".json":
        text = (
            json.dumps(
                {
                    "sort": report.sort,
                    "direction": report.direction,
                    "shared": report.shared,
                    "runs": to_records(report),
                },
                indent=2,
            )
            + "\n"
        )
    else:
        buffer = io.StringIO()
        records = to_records(report)
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
        text = buffer.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def _legend(report: Report, row: RunRow) -> str:
    """The run and what sets it apart: '2: loss=ns optimizer.lr=1e-4'."""
    differs = " ".join(f"{k}={row.overrides[k]}" for k in report.varied if k in row.overrides)
    return f"{row.label}: {differs}" if differs else row.label


def write_plots(report: Report, folder: Path) -> list[Path]:
    """report_losses.png and report_scores.png (every run's curve in one panel per tag) and report_samples.png
    (each run's last sample grid, labelled)."""
    from gan_cli.plots import pyplot, save_figure

    plt = pyplot()
    written = []
    curves = {_legend(report, r): read_curves(r.path, LOSS_TAGS, prefix="metrics/") for r in report.runs}
    for name, tags in (
        ("losses", list(LOSS_TAGS)),
        ("scores", sorted({t for c in curves.values() for t in c if t.startswith("metrics/")})),
    ):
        tags = [t for t in tags if any(t in c for c in curves.values())]
        if not tags:
            continue
        cols = min(len(tags), 2)
        rows = math.ceil(len(tags) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
        for ax, tag in zip(axes.flat, tags):
            for label, c in curves.items():
                if tag in c:
                    ax.plot(*c[tag], label=label, linewidth=1.2)
            ax.set_title(tag)
            ax.set_xlabel("step")
        for ax in list(axes.flat)[len(tags) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7, loc="best")
        fig.tight_layout()
        written.append(save_figure(fig, folder / f"report_{name}.png"))
    grids = [(_legend(report, r), sorted((r.path / "samples").glob("step_*.png"))) for r in report.runs]
    grids = [(label, files[-1]) for label, files in grids if files]
    if grids:
        cols = min(len(grids), 4)
        rows = math.ceil(len(grids) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.5 * rows), squeeze=False)
        for ax, (label, file) in zip(axes.flat, grids):
            ax.imshow(plt.imread(str(file)), cmap="gray")
            ax.set_title(f"{label}\n{file.stem}", fontsize=8)
        for ax in axes.flat:
            ax.axis("off")
        fig.tight_layout()
        written.append(save_figure(fig, folder / "report_samples.png"))
    return written


# ---------------------------------------------------------------------------------------------
# the command and the end-of-sweep callback
# ---------------------------------------------------------------------------------------------
USAGE = """usage: gan report <dir> [<dir> ...] [sort=SCORE] [out=FILE.md|.csv|.json ...] [plots=true]

One row per run of a multirun directory, an outputs/DATE directory or the run directories given: the overrides
that differ, how each run ended (and why), steps, time, every score and the final losses, ranked by a score
(default: the runs' eval.best). plots=true writes report_losses.png, report_scores.png and report_samples.png
next to the first out= file (or into the single directory given)."""


def parse_arguments(args: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    targets, options = [], {"sort": None, "out": [], "plots": False}
    for arg in args:
        if "=" not in arg or Path(arg).exists():
            targets.append(arg)
            continue
        key, value = arg.split("=", 1)
        if key not in OPTIONS:
            raise GanError(
                f"gan report: unknown option {key!r} in {arg!r}. Allowed: {', '.join(f'{o}=' for o in OPTIONS)}; anything else is a directory."
            )
        if key == "out":
            if Path(value).suffix not in FORMATS:
                raise GanError(
                    f"gan report: out={value!r} must end in {', '.join(FORMATS)} (the format follows the suffix)."
                )
            options["out"].append(Path(value))
        elif key == "plots":
            if value.lower() not in ("true", "false"):
                raise GanError(f"gan report: plots={value!r} must be true or false.")
            options["plots"] = value.lower() == "true"
        else:
            options["sort"] = value
    return targets, options


def report_command(args: Sequence[str]) -> Report:
    targets, options = parse_arguments(args)
    report = build_report(targets, options["sort"])
    console = Console()
    print_report(report, console)
    for out in options["out"]:
        console.print(f"wrote {write_report(report, out)}", highlight=False, soft_wrap=True)
    if options["plots"]:
        folder = options["out"][0].parent if options["out"] else Path(targets[0]) if len(targets) == 1 else Path.cwd()
        for path in write_plots(report, folder):
            console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    return report


LAST_SWEEP: list[Report] = []  # the report of the multirun that just ended in this process (for the CLI's exit code)


class SweepReport(Callback):
    """Hydra callback (conf/train.yaml, hydra.callbacks): once every job of a multirun is done, in the process that
    launched them (whichever launcher ran them), print the report and write report.md into the sweep directory."""

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            report = build_report([str(sweep_dir)])
        except GanError as err:  # no job made a run directory (every one refused before it started)
            Console(stderr=True).print(f"gan report: {err}", highlight=False)
            return
        print_report(report, title=f"sweep {sweep_dir}")
        try:
            written = write_report(report, sweep_dir / "report.md", title=f"sweep {sweep_dir}")
            Console().print(f"wrote {written}", highlight=False, soft_wrap=True)
        except OSError as err:
            Console(stderr=True).print(f"gan report: could not write {sweep_dir / 'report.md'}: {err}", highlight=False)
        LAST_SWEEP.append(report)
