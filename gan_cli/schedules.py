"""Learning-rate schedules for G and D: constant, linear or cosine decay to 0 at the last step, after an optional warm-up.

Decaying both learning rates at the end of a run lets the game settle: with a constant rate the
two players keep circling the equilibrium, and samples stay as noisy as the last few updates.
The schedule is a pure function of the step (`lr_factor`), so it is the same on resume, and
torch's LambdaLR carries the step count in the checkpoint.
"""

from __future__ import annotations

import math

import torch

from gan_cli.config import Schedule
from gan_cli.errors import GanError, one_of

SCHEDULES = tuple(
    s.value for s in Schedule
)  # the schema's Enum is the one list (optimizer.schedule, loss.info_schedule)


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0) -> float:
    """The multiplier of the base lr for the update of generator step `step + 1` (0-based count of updates done).

    warm-up: (step + 1) / warmup for the first `warmup` updates; then over the remaining updates,
    linear: 1 - p, cosine: (1 + cos(pi p)) / 2, constant: 1, where p in [0, 1) is the fraction done.
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    p = (step - warmup) / max(1, total - warmup)
    p = min(max(p, 0.0), 1.0)
    return 1.0 - p if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * p))


def check_schedule(cfg, total: int) -> None:
    if cfg.schedule not in SCHEDULES:
        raise one_of("optimizer.schedule", cfg.schedule, SCHEDULES)
    if cfg.warmup < 0 or (cfg.warmup > 0 and cfg.warmup >= total):
        raise GanError(
            f"optimizer.warmup={cfg.warmup} must be >= 0 and below train.steps={total} (steps of linear warm-up; 0 = none)."
        )


def build_schedulers(cfg, total: int, *optimizers: torch.optim.Optimizer) -> list[torch.optim.lr_scheduler.LambdaLR]:
    """One LambdaLR per optimizer, stepped once per generator step (D's k critic steps share that step's lr)."""
    check_schedule(cfg, total)
    schedule, warmup = str(cfg.schedule), int(cfg.warmup)
    return [
        torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(schedule, step, total, warmup))
        for opt in optimizers
    ]
