"""A 4-job CPU sweep run one job after another (Hydra's basic launcher, every core per job) and two at a time
(hydra/launcher=joblib, the cores shared: train.threads left to gan), side by side in one script, as wall time.

    python -m bench.sweep_parallel                       # experiment=ring8 at 1,500 steps, seeds 0-3
    python -m bench.sweep_parallel --steps 300 --args model=dcgan dataset=mnist5k   # an image sweep

The two sweeps alternate (serial, joblib, serial, joblib for --repeats 2), so a machine whose load changes
slows both alike. Writes the table to bench/RESULTS_sweep.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def sweep(args: list[str], launcher: list[str], cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # gan picks the threads, as for a user
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "gan_cli", "train", "-m", *launcher, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--jobs", type=int, default=2, help="joblib's n_jobs")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--args", nargs="*", default=["experiment=ring8", "eval.every=0"])
    opts = parser.parse_args()
    args = [*opts.args, f"train.steps={opts.steps}", "seed=0,1,2,3"]
    launchers = {
        "basic (one job at a time)": [],
        f"joblib n_jobs={opts.jobs}": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={opts.jobs}"],
    }
    times: dict[str, list[float]] = {name: [] for name in launchers}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(opts.repeats):
            for name, launcher in launchers.items():
                times[name].append(sweep(args, launcher, Path(tmp)))
                print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    serial = min(times[next(iter(launchers))])
    lines = [
        f"# 4-job sweep on {os.cpu_count()} CPU cores: `gan train -m {' '.join(args)}`",
        "",
        "| launcher | wall time (best of repeats) | speed-up |",
        "|---|---|---|",
    ]
    for name, values in times.items():
        lines.append(f"| {name} | {min(values):.1f} s | {serial / min(values):.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "RESULTS_sweep.md").write_text(text)


if __name__ == "__main__":
    main()
