"""Scaling of one run over processes: images/s of `gan train` on 1 and on N processes (`dist.nproc_per_node`,
gloo on the CPU, one thread per process), side by side and alternating, and the efficiency
images/s(N) / (N x images/s(1)).

    python -m bench.distributed                        # dcgan mnist5k b64 and mlp wgan_gp ring8 b256, 1 vs 2
    python -m bench.distributed --steps 100 --repeats 1  # a smoke run

The time is the training loop's own (train.log's "finished at step N after X s": set-up, data loading and the
launcher's start-up excluded). Writes bench/RESULTS_distributed.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.helpers import Trained, gan_train

HERE = Path(__file__).resolve().parent
CASES = {
    "dcgan mnist5k b64": ["model=dcgan", "dataset=mnist5k", "train.batch_size=64"],
    "mlp wgan_gp ring8 b256 (5 critic steps)": ["model=mlp", "dataset=ring8", "loss=wgan_gp", "train.batch_size=256"],
}


def timed_run(args: list[str], world: int, steps: int, cwd: Path) -> Trained:
    """`gan train ARGS` on `world` processes for `steps` steps, one thread each, logging and saving only at the end."""
    run = cwd / f"w{world}_{time.monotonic_ns()}"
    cadences = [f"train.{key}={steps}" for key in ("steps", "log_every", "sample_every", "ckpt_every")]
    extra = [*cadences, "train.threads=1", "eval.every=0", f"dist.nproc_per_node={world}"]
    return gan_train([*args, *extra], run, cwd)


def train_seconds(args: list[str], world: int, steps: int, cwd: Path) -> float:
    return timed_run(args, world, steps, cwd).loop_seconds


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--world", type=int, default=2, help="processes of the distributed side")
    parser.add_argument(
        "--repeats", type=int, default=2, help="alternations of 1 and N processes per case (the best of each is kept)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS_distributed.md")
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            batch = int(next(a for a in case if a.startswith("train.batch_size=")).split("=")[1])
            critic = 5 if "loss=wgan_gp" in case else 1
            best = {1: float("inf"), args.world: float("inf")}
            for _ in range(args.repeats):
                for world in best:
                    best[world] = min(best[world], train_seconds(case, world, args.steps, Path(tmp)))
                    print(f"{name}: {world} process(es): {best[world]:.1f} s", flush=True)
            ips = {w: args.steps * batch * critic / s for w, s in best.items()}
            rows.append((name, ips[1], ips[args.world], ips[args.world] / (args.world * ips[1])))
    lines = [
        "# Scaling of one run over processes (DistributedDataParallel)",
        "",
        f"Written by `python -m bench.distributed {' '.join(argv if argv is not None else sys.argv[1:])}` on {started}; "
        f"{os.cpu_count()} CPU cores, load average at the start {load:.2f}.",
        f"{args.steps} generator steps per run, one thread per process, gloo; the best of {args.repeats} alternating runs each. "
        "images/s: real images through D per second of the training loop (global batch x critic steps).",
        f"Efficiency: images/s on {args.world} processes / ({args.world} x images/s on 1).",
        "",
        f"| case | images/s, 1 process | images/s, {args.world} processes | efficiency |",
        "|---|---|---|---|",
        *(f"| {n} | {a:,.0f} | {b:,.0f} | {e:.0%} |" for n, a, b, e in rows),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
