"""`make bench-models`: how long the other architectures take to reach the default DCGAN's quality, on the clock.

A step of `experiment=progan` or `model=lapgan` costs something else than a DCGAN step (ProGAN's small sides are
cheap, its full side dear), so steps say little: this trains `gan train`'s default and each architecture one after
the other (never at once, the same torch threads), each scored every K steps with fid5k_lenet on the same noise,
and reports the training wall time each needs to reach the threshold (10 by default: the issue's bar for ProGAN)
and the ratio to the default's time. The clocks are metrics.jsonl's `train_seconds` (scoring left out), exactly as
in bench/quality.py, whose `train_gan` runs each one. Writes bench/RESULTS_models.md.

    python -m bench.architectures                         # default vs experiment=progan, threshold 10
    python -m bench.architectures --runs progan lapgan    # more than one
    python -m bench.architectures --quick                 # a smoke run (tiny budget, n=500)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch

from bench.helpers import machine
from bench.quality import Curve, _metric_name, default_threads, train_gan

HERE = Path(__file__).resolve().parent
# name -> (what it is, its overrides); "dcgan" is `gan train` as it stands
RUNS: dict[str, tuple[str, list[str]]] = {
    "dcgan": ("the default run (`gan train`)", []),
    "progan": ("`gan train experiment=progan`", ["experiment=progan"]),
    "lapgan": ("`gan train model=lapgan`", ["model=lapgan"]),
    "style": ("`gan train model=style`", ["model=style"]),
}


def race(names: list[str], budget: float, every: int, n: int, threads: int, work: Path, log=print) -> dict[str, Curve]:
    """Each run's curve, the default first; each stops at its train.steps or after the first score past the budget."""
    curves = {}
    for name in ["dcgan", *[m for m in names if m != "dcgan"]]:
        what, overrides = RUNS[name]
        (work / name).mkdir(parents=True, exist_ok=True)
        curves[name] = train_gan(work / name / "run", every, n, budget, overrides, None, threads, log, name, what)
    return curves


def time_ratio(base: Curve, other: Curve, threshold: float) -> str:
    """other's time to the threshold over the default's; a bound when only one got there."""
    b, o = base.reached(threshold), other.reached(threshold)
    if b and o:
        return f"{o.seconds / b.seconds:.2f}x"
    if b and other.points:
        return f"> {other.points[-1].seconds / b.seconds:.2f}x (not reached in {other.points[-1].seconds:.0f} s)"
    return "n/a (the default did not get there)"


def report(
    curves: dict[str, Curve], threshold: float, budget: float, every: int, n: int, threads: int, command: str
) -> list[str]:
    metric = _metric_name(n)
    base = curves["dcgan"]
    lines = [
        "# Architectures on the clock",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {machine()}; {threads} torch thread{'s' if threads != 1 else ''} for each run, one run at a time.",
        "",
        f"Training wall time until {metric} <= {threshold:g} (scored every {every} steps on the same {n} noise vectors;",
        f"scoring left out of the clocks), and the ratio to the default run's time. Budget {budget:g} s per run.",
        "",
        *(f"- **{name}**: {c.settings}; {c.ended}." for name, c in curves.items()),
        "",
        f"| run | time to {metric} <= {threshold:g} | / default | best {metric} | steps/s (whole run) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, c in curves.items():
        hit = c.reached(threshold)
        cell = "not reached" if hit is None else f"{hit.seconds:,.1f} s (step {hit.step:,})"
        best = min((p.score for p in c.points), default=float("nan"))
        rate = c.points[-1].step / c.points[-1].seconds if c.points else float("nan")
        ratio = "1" if name == "dcgan" else time_ratio(base, c, threshold)
        lines.append(f"| {name} | {cell} | {ratio} | {best:.2f} | {rate:.2f} |")
    lines.append("")
    for name, c in curves.items():
        lines += [f"{name} curve:", "", f"| step | train s | {metric} |", "|---:|---:|---:|"]
        lines += [f"| {p.step:,} | {p.seconds:,.1f} | {p.score:.2f} |" for p in c.points]
        lines.append("")
    return lines


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", default=["progan"], choices=sorted(set(RUNS) - {"dcgan"}))
    p.add_argument("--threshold", type=float, default=10.0, metavar="FID")
    p.add_argument("--budget", type=float, default=None, metavar="S", help="training seconds per run (default 900)")
    p.add_argument("--every", type=int, default=None, help="steps between scores (default 250)")
    p.add_argument("--n", type=int, default=None, help="samples per score (default 5000)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (default: OMP_NUM_THREADS or all cores)"
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: 20 s per run, a score every 50 steps, n=500")
    p.add_argument("--keep", type=Path, default=None, help="keep the run directories here")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS_models.md")
    args = p.parse_args(argv)
    budget = args.budget or (20.0 if args.quick else 900.0)
    every = args.every or (50 if args.quick else 250)
    n = args.n or (500 if args.quick else 5000)
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    work = args.keep or Path(tempfile.mkdtemp(prefix="gan_models_"))
    try:
        curves = race(args.runs, budget, every, n, threads, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    command = "python -m bench.architectures " + " ".join(argv if argv is not None else __import__("sys").argv[1:])
    args.out.write_text("\n".join(report(curves, args.threshold, budget, every, n, threads, command.strip())) + "\n")
    (args.out.with_suffix(".json")).write_text(json.dumps({k: asdict(c) for k, c in curves.items()}, indent=1) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
