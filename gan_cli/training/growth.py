"""Progressive growing in the training loop: which stage and alpha each generator step trains at, and real batches
shown to D as the current stage's G makes its images.

The stage is a function of the step number alone (`Growth.at`), set on G, D and the EMA copy before every step, so a
run resumed from any checkpoint, mid-fade included, trains exactly the steps an uninterrupted run would. The step
function itself does not change: G in training mode returns the stage's side, and `GrowingBatches` hands the step
real batches at that side.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from gan_cli.errors import GanError
from gan_cli.models.progan import Growing, Growth, ProDiscriminator


def growing_parts(module: nn.Module) -> list[Growing]:
    """Every growing network inside `module` (through PacGAN's wrapper, DDP's or the EMA copy)."""
    return [m for m in module.modules() if isinstance(m, Growing)]


def growth_of(cfg, G: nn.Module) -> Optional[Growth]:
    """The schedule of a growing model (None for every other model); build_models checked its options."""
    parts = growing_parts(G)
    if not parts:
        return None
    return Growth(len(parts[0].sides), int(cfg.model.fade_steps), int(cfg.model.stable_steps))


def check_growth_run(cfg, world_size: int = 1) -> None:
    """What a growing model does not do yet, refused by name."""
    if cfg.model.name == "progan" and max(world_size, int(cfg.dist.nproc_per_node)) > 1:
        raise GanError(
            "model=progan trains in one process for now (DDP needs every parameter in every step, and the blocks of later stages wait unused); use dist.nproc_per_node=1."
        )


def set_growth(growth: Growth, step: int, *modules: nn.Module) -> dict[str, float]:
    """Put every growing network in `modules` at the stage and alpha of generator step `step`; returns the
    `progress/resolution` and `progress/alpha` scalars."""
    stage, alpha = growth.at(step)
    side = 0
    for module in modules:
        for part in growing_parts(module):
            part.set_progress(stage, alpha)
            side = part.side
    return {"progress/resolution": float(side), "progress/alpha": alpha}


class GrowingBatches:
    """A batcher whose real images are what D's current stage reads (`ProDiscriminator.real_view`)."""

    def __init__(self, batcher, D: nn.Module) -> None:
        self.batcher = batcher
        self.views = [m for m in D.modules() if isinstance(m, ProDiscriminator)]

    def next(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        x, y = self.batcher.next()
        return self.views[0].real_view(x), y

    @property
    def batches_done(self) -> int:
        return self.batcher.batches_done
