"""What the benchmark scripts share: a timed chunk of steps, loops taking turns in alternating chunks (the order
flipping every round, so a shared machine's changing load slows them alike), and a line naming the machine."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

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
