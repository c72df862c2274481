"""`make bench`: gan's training step against the canonical DCGAN loop, interleaved in one process.

For every case both loops train on the same networks, batch, optimizer and data (bench/loops.py);
they take turns in short timed chunks, so a machine whose load changes during the run (a shared
CPU) slows both alike and the ratio stays fair. Peak memory is measured per loop in a fresh
subprocess (RSS; on a GPU also CUDA's max allocated). Writes the tables to bench/RESULTS.md.

    python -m bench.bench                    # every case and the scaling table
    python -m bench.bench --quick            # fewer steps, for a smoke run
    python -m bench.bench --speed train.compile=on --peak-tflops 989   # GPU: options, and % of peak
    python -m bench.bench --quality          # only the time-to-quality section (bench/quality.py)

Last, one run on 1 and on 2 processes (DistributedDataParallel over gloo, bench/distributed.py, written to
bench/RESULTS_distributed.md); --no-distributed skips it.

After the throughput tables, `make bench` trains `gan train`'s default run and the canonical loop one
after the other and reports the training wall time each needs to reach fid5k_lenet <= 30
(bench/quality.py); --no-quality skips that part (about 10 minutes on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from torch.utils.flop_counter import FlopCounterMode

from bench.helpers import alternate, machine, timed
from bench.loops import Case, build_loop, build_pair

HERE = Path(__file__).resolve().parent
CASES = [
    Case("dcgan mnist5k 28x28x1 b64", ["model=dcgan", "dataset=mnist5k"], batch_size=64),
    Case("dcgan mnist5k 28x28x1 b256", ["model=dcgan", "dataset=mnist5k"], batch_size=256),
    Case("dcgan random 32x32x3 b64", ["model=dcgan", "dataset=mnist5k"], data="random", batch_size=64),
    Case("dcgan random 32x32x3 b256", ["model=dcgan", "dataset=mnist5k"], data="random", batch_size=256),
    Case(
        "mlp wgan_gp ring8 b64 (5 critic steps)",
        ["model=mlp", "experiment=wgan_gp", "dataset=ring8"],
        data="ring8",
        batch_size=64,
    ),
]
SCALING_BATCHES = (64, 256, 1024)
SCALING_SIZES = ((28, 1), (32, 3), (64, 3))


def scaling_cases() -> list[Case]:
    by_batch = [Case(f"dcgan 28x28x1 b{b}", ["model=dcgan", "dataset=mnist5k"], batch_size=b) for b in SCALING_BATCHES]
    by_size = [
        Case(
            f"dcgan {s}x{s}x{c} b64",
            ["model=dcgan", "dataset=mnist5k"],
            data="random",
            image_size=s,
            channels=c,
            batch_size=64,
        )
        for s, c in SCALING_SIZES
        if s != 28  # 28x28x1 at batch 64 is the first line of the batch-size sweep
    ]
    return by_batch + by_size


def step_flops(loop) -> float:
    """FLOPs of one training step (torch's FlopCounterMode); nan where the step differentiates twice."""
    try:
        with FlopCounterMode(display=False) as counter:
            loop.step()
        return float(counter.get_total_flops())
    except RuntimeError:  # the counter cannot follow autograd.grad inside a step (gradient penalties)
        return float("nan")


def race(case: Case, rounds: int, chunk: int, warmup: int) -> dict:
    """images/s of both loops, measured in alternating chunks (the order flips every round)."""
    gan, base = build_pair(case)
    seconds, cuda_peak = alternate({"gan": gan, "baseline": base}, rounds, chunk, warmup)
    images = rounds * chunk * gan.images_per_step
    flops = step_flops(gan)
    out = {
        "case": case.name,
        "plan": gan.plan.describe(),
        "gan_ips": images / seconds["gan"],
        "base_ips": images / seconds["baseline"],
        "flops_per_step": flops,
        # what the ratio would be from doing less arithmetic alone, at equal kernel speed
        "flop_ratio": step_flops(base) / flops,
    }
    out["ratio"] = out["gan_ips"] / out["base_ips"]
    out["gan_gflops"] = out["flops_per_step"] * out["gan_ips"] / gan.images_per_step / 1e9
    if gan.device.type == "cuda":
        out["gan_cuda_mib"], out["base_cuda_mib"] = cuda_peak["gan"] / 2**20, cuda_peak["baseline"] / 2**20
    return out


# ---------------------------------------------------------------------------------------------
# peak RSS, one loop per fresh process
# ---------------------------------------------------------------------------------------------
def _peak_kib(pid: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children() -> list[str]:
    kids: list[str] = []
    for task in Path("/proc/self/task").iterdir():
        kids += (task / "children").read_text().split()
    return kids


def rss_child(case: Case, which: str, steps: int) -> None:
    """Entry point of the subprocess: build one loop, train `steps`, print its peak RSS (MiB) as JSON."""
    loop = build_loop(case, which)
    timed(loop, steps)
    workers = sum(_peak_kib(pid) for pid in _children())
    print(json.dumps({"main_mib": _peak_kib("self") / 1024, "workers_mib": workers / 1024}))


def peak_rss(case: Case, which: str, steps: int, speed: list[str]) -> dict:
    if not Path("/proc/self/status").exists():
        return {"main_mib": float("nan"), "workers_mib": float("nan")}
    cmd = [sys.executable, "-m", "bench.bench", "--rss-of", case.name, which, "--steps", str(steps), "--speed", *speed]
    proc = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
def table(rows: list[dict], rss: dict, peak_tflops: float | None) -> list[str]:
    cuda = any("gan_cuda_mib" in r for r in rows)
    head = "| case | gan images/s | baseline images/s | ratio | FLOPs baseline / gan | gan GFLOP/s |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if peak_tflops:
        head, rule = head + " % of peak |", rule + "---:|"
    if rss:
        head, rule = head + " peak RSS gan (MiB) | peak RSS baseline (MiB, + workers) |", rule + "---:|---:|"
    if cuda:
        head, rule = head + " CUDA max alloc gan / baseline (MiB) |", rule + "---:|"
    lines = [head, rule]
    for r in rows:
        gflops = "n/a" if math.isnan(r["gan_gflops"]) else f"{r['gan_gflops']:,.1f}"
        flop_ratio = "n/a" if math.isnan(r["flop_ratio"]) else f"{r['flop_ratio']:.2f}"
        line = f"| {r['case']} | {r['gan_ips']:,.0f} | {r['base_ips']:,.0f} | **{r['ratio']:.2f}x** | {flop_ratio} | {gflops} |"
        if peak_tflops:
            line += f" {r['gan_gflops'] / (10 * peak_tflops):.1f}% |"
        if rss:
            g, b = rss[r["case"]]["gan"], rss[r["case"]]["baseline"]
            line += f" {g['main_mib']:,.0f} | {b['main_mib']:,.0f} (+ {b['workers_mib']:,.0f}) |"
        if cuda:
            line += f" {r['gan_cuda_mib']:,.0f} / {r['base_cuda_mib']:,.0f} |"
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer and shorter rounds (a smoke run, not for the record)")
    p.add_argument("--rounds", type=int, default=8, help="alternations of the two loops per case")
    p.add_argument("--chunk", type=int, default=5, help="steps per loop per round")
    p.add_argument(
        "--speed", nargs="*", default=[], help="train.* overrides for gan's side, e.g. train.compile=on train.amp=bf16"
    )
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's peak TFLOP/s at the precision used, to report the fraction reached",
    )
    p.add_argument("--no-scaling", action="store_true", help="skip the batch-size / image-size table")
    p.add_argument("--only-scaling", action="store_true", help="only the batch-size / image-size table")
    p.add_argument("--quality", action="store_true", help="only the time-to-quality section (bench/quality.py)")
    p.add_argument("--no-quality", action="store_true", help="skip the time-to-quality section")
    p.add_argument(
        "--quality-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="training seconds per loop (default 300; 20 with --quick)",
    )
    p.add_argument(
        "--quality-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="steps between scores (default 250; 50 with --quick)",
    )
    p.add_argument(
        "--quality-n",
        type=int,
        default=None,
        metavar="N",
        help="samples per score (default 5000: fid5k_lenet; 500 with --quick)",
    )
    p.add_argument("--quality-threshold", type=float, default=30.0, metavar="FID", help="the FID to reach (default 30)")
    p.add_argument(
        "--no-distributed", action="store_true", help="skip the scaling over processes (bench/distributed.py)"
    )
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--rss-of", nargs=2, metavar=("CASE", "LOOP"), help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=6, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    all_cases = {c.name: c for c in CASES + scaling_cases()}
    if args.rss_of:
        rss_child(replace(all_cases[args.rss_of[0]], speed=args.speed), args.rss_of[1], args.steps)
        return
    if args.quality:
        quality(args, argv)
        return
    rounds, chunk, warmup = (2, 2, 1) if args.quick else (args.rounds, args.chunk, 3)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{machine()}; load average {load:.2f}", flush=True)

    rows, rss = [], {}
    for case in [] if args.only_scaling else CASES:
        case = replace(case, speed=args.speed)
        rows.append(race(case, rounds, chunk, warmup))
        rss[case.name] = {w: peak_rss(case, w, 3 if args.quick else 10, args.speed) for w in ("gan", "baseline")}
        print(json.dumps(rows[-1] | {"rss": rss[case.name]}), flush=True)
    scaling = []
    s_rounds, s_chunk = (1, 1) if args.quick else (3, 3)
    if not args.no_scaling:
        for case in scaling_cases():
            scaling.append(race(replace(case, speed=args.speed), s_rounds, s_chunk, 1))
            print(json.dumps(scaling[-1]), flush=True)

    plans = sorted({r["plan"] for r in rows + scaling})
    text = [
        "# Benchmark: gan's training step vs the canonical DCGAN loop",
        "",
        f"Written by `make bench` (`python -m bench.bench {' '.join(argv if argv is not None else sys.argv[1:])}`) on {started}.",
        f"Machine: {machine()}; load average at the start {load:.2f}.",
        f"gan's speed paths: {'; '.join(plans)}.",
        "",
        "Both loops train the same networks (one build, copied), batch, optimizer and data, taking turns in",
        f"chunks of {chunk} steps ({rounds} rounds each, after {warmup} warm-up steps; the scaling table {s_rounds} rounds of {s_chunk}),",
        "so a change of machine load hits both alike.",
        "The baseline is written in the style of pytorch/examples `dcgan/main.py` (bench/loops.py): DataLoader with 2 workers",
        "over PIL images with torchvision transforms, Sigmoid + BCELoss, `zero_grad()`, plain Adam, `.item()` per step.",
        "images/s counts real images through D (batch x critic steps). FLOPs baseline / gan: the arithmetic of one baseline step over one gan step",
        "(torch's FlopCounterMode; n/a where the step differentiates twice), i.e. the ratio that doing less work alone would give at equal kernel speed.",
        "GFLOP/s: FLOPs of one gan step x steps/s.",
        "Peak RSS: VmHWM of a fresh process training only that loop (the baseline's DataLoader workers listed apart).",
        "",
        *(table(rows, rss, args.peak_tflops) if rows else []),
    ]
    if scaling:
        text += [
            "",
            "## Scaling: images/s against batch size and image size",
            "",
            *table(scaling, {}, args.peak_tflops),
        ]
    args.out.write_text("\n".join(text) + "\n")
    print("\n".join(text))
    if not (args.no_quality or args.only_scaling):
        quality(args, argv)
    if not (args.no_distributed or args.only_scaling):
        from bench.distributed import main as scaling_over_processes

        scaling_over_processes(
            ["--steps", "40", "--repeats", "1"] if args.quick else []
        )  # bench/RESULTS_distributed.md


def quality(args: argparse.Namespace, argv: list[str] | None) -> None:
    """The time-to-quality section: written into args.out in place of an earlier one (the rest of the file kept)."""
    from bench.quality import report, time_to_quality, write_section

    budget = args.quality_budget or (20.0 if args.quick else 300.0)
    every = args.quality_every or (50 if args.quick else 250)
    n = args.quality_n or (500 if args.quick else 5000)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    where = f"{machine()}; load average at the start {load:.2f}"
    print(f"time to quality: budget {budget:g} s per loop, a score every {every} steps, n={n}; {where}", flush=True)
    result = time_to_quality(budget=budget, every=every, n=n, threshold=args.quality_threshold)
    print(json.dumps(result), flush=True)
    command = "python -m bench.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = report(result, command.strip(), where)
    write_section(args.out, lines, "Benchmark: gan's training step vs the canonical DCGAN loop")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
