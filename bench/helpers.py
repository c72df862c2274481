"""What the benchmark scripts share: a timed chunk of steps, loops taking turns in alternating chunks (the order
flipping every round, so a shared machine's changing load slows them alike), a line naming the machine, and one
`gan train` in a subprocess timed by its own log."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch


def timed(loop, steps: int) -> float:
    loop.sync()
    t = time.perf_counter()
    for _ in range(steps):
        loop.step()
    loop.sync()
    return time.perf_counter() - t


def alternate(loops: dict[str, Any], rounds: int, chunk: int, warmup: int) -> tuple[dict[str, float], dict[str, int]]:
    """(seconds, CUDA peak bytes) of each loop over `rounds` chunks of `chunk` steps, after `warmup` steps each: the
    loops take turns, the order flipping every round, so a shared machine's changing load slows them alike."""
    for loop in loops.values():
        timed(loop, warmup)
    seconds, cuda_peak = dict.fromkeys(loops, 0.0), dict.fromkeys(loops, 0)
    for r in range(rounds):
        for name in list(loops) if r % 2 == 0 else list(loops)[::-1]:
            device = loops[name].device
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds[name] += timed(loops[name], chunk)
            if device.type == "cuda":
                cuda_peak[name] = max(cuda_peak[name], torch.cuda.max_memory_allocated(device))
    return seconds, cuda_peak


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return f"CPU: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


FINISHED = re.compile(r"finished at step (\d+) after ([0-9.]+) s")


@dataclass(frozen=True)
class Trained:
    """One `gan train` as a benchmark sees it."""

    run: Path
    steps: int
    loop_seconds: float  # train.log's "finished at step N after X s": the training loop alone
    wall_seconds: float  # the whole command: imports, data, set-up, the last samples and checkpoint
    log: str


def checkout_env() -> dict[str, str]:
    """The environment of a `python -m gan_cli` that runs this checkout's code, with OMP_NUM_THREADS dropped so that
    `train.threads` (or gan's own choice) decides."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def gan_train(args: list[str], run: Path, cwd: Path, timeout: Optional[float] = None) -> Trained:
    """`python -m gan_cli train ARGS hydra.run.dir=RUN` with this checkout's code, timed by its own train.log (so
    the launcher's and Python's start-up stay out of the loop's time); a failure stops the benchmark with its stderr."""
    command = [sys.executable, "-m", "gan_cli", "train", *args, f"hydra.run.dir={run}"]
    t = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=checkout_env(), capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t
    log = (run / "train.log").read_text() if (run / "train.log").is_file() else ""
    found = FINISHED.search(log)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return Trained(run, int(found.group(1)), float(found.group(2)), wall, log)
