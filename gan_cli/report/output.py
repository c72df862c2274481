"""The report on the console and in files: columns, the summary lines, Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Optional

from rich.console import Console

from gan_cli.files import write_atomic
from gan_cli.metrics.scorer import NEAR_ONE
from gan_cli.report.runs import LOSS_TAGS, Report, RunRow
from gan_cli.rundir import shell_command
from gan_cli.tables import print_columns


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


def direction_word(direction: Optional[str]) -> str:
    return {"min": "lower is better", "max": "higher is better", NEAR_ONE: "best at 1"}.get(
        direction or "", "direction unknown"
    )


def columns(report: Report) -> list[tuple[str, list[str]]]:
    """(header, cells) of every column, in the order shown: who, what differs, how it ended, scores, losses."""
    runs = report.runs
    cols = [("#", [str(r.rank) if r.rank else "-" for r in runs]), ("run", [r.label for r in runs])]
    if len(report.data) > 1:  # runs on different data: each ranked among its own
        cols.append(("data", [r.data for r in runs]))
    cols += [(k, [r.overrides.get(k, "-") for r in runs]) for k in report.varied]
    cols += [
        ("status", [r.status for r in runs]),
        ("step", [f"{_fmt(r.step)}/{_fmt(r.steps)}" for r in runs]),
        ("time", [_duration(r.seconds) for r in runs]),
    ]
    if any(r.warnings is not None for r in runs):  # runs from before the health detectors record none
        cols.append(("health", [r.health for r in runs]))
    cols += [
        (name + (" *" if name == report.sort else ""), [_fmt(r.scores.get(name)) for r in runs])
        for name in report.score_names()
    ]
    if report.sort:  # the checkpoint step the ranked score came from (an older checkpoint's, when only it was scored)
        cols.insert(
            len(cols) - len(report.score_names()) + 1,
            ("scored at", [_fmt(r.score_steps.get(report.sort)) if report.sort in r.scores else "-" for r in runs]),
        )
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
        lines.append(
            f"ranked by {report.sort} ({direction_word(report.direction)}) of the checkpoint step in 'scored at'; * marks it"
        )
    else:
        lines.append(
            "no scores found: runs in directory order (train with eval.every > 0, or score them with gan eval ckpt=...)"
        )
    if len(report.data) > 1:
        lines.append(
            f"ranked within each dataset and image size (the data column: {', '.join(report.data)}): "
            "scores of different data are on different scales, so their runs are never ranked against each other"
        )
    for best in report.bests if report.sort else []:
        where = f" on {best.data}" if len(report.data) > 1 else ""
        lines.append(f"best{where}: {best.label} ({report.sort} {_fmt(best.scores[report.sort])}) in {best.path}")
        lines += [f"  {c}" for c in next_commands(best)]
    for r in report.runs:
        if r.reason and r.status != "finished":
            lines.append(f"{r.label} {r.status}: {r.reason}")
        for w in r.warnings or []:
            tried = f"; try {' or '.join(map(str, w.get('advice') or []))}" if w.get("advice") else ""
            lines.append(f"{r.label} health: {w.get('name')} since step {w.get('since')}: {w.get('seen')}{tried}")
    if report.never_started:
        lines.append(f"never started (no checkpoint, no status.json; not listed): {', '.join(report.never_started)}")
    if report.never_ran:
        lines.append(f"never ran (planned by the sweep, no job directory; not listed): {', '.join(report.never_ran)}")
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
                **({"data": r.data} if len(report.data) > 1 else {}),
                **{k: r.overrides.get(k) for k in report.varied},
                "status": r.status,
                "reason": r.reason,
                "step": r.step,
                "steps": r.steps,
                "seconds": r.seconds,
                "health": r.health,
                **{name: r.scores.get(name) for name in report.score_names()},
                **({"scored_at": r.score_steps.get(report.sort)} if report.sort else {}),
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
                    "never_started": report.never_started,
                    "never_ran": report.never_ran,
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
    write_atomic(out, text)  # a symlink at report.md (a sweep folder may come from anywhere) is replaced, not followed
    return out
