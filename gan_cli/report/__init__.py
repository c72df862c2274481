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

from pathlib import Path
from typing import Any, Sequence

from hydra.experimental.callback import Callback
from rich.console import Console

from gan_cli.errors import GanError
from gan_cli.report.output import print_report, write_report
from gan_cli.report.plots import write_plots
from gan_cli.report.runs import FORMATS, Report, build_report, read_run

OPTIONS = ("sort", "out", "plots")
__all__ = [
    "LAST_SWEEP",
    "USAGE",
    "SweepReport",
    "build_report",
    "parse_arguments",
    "print_report",
    "read_run",
    "report_command",
]


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
