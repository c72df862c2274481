"""The training step of `model=lapgan`: every level of the Laplacian pyramid is a GAN of its own, trained on the
same batch with the run's objective, penalty and n_critic.

`model.level_input=real` (the paper's): level k < K's G_k turns a noise plane and the real up(I_{k+1}) into a
residual, and D_k judges (up(I_{k+1}), h_k) pairs, real residuals against G_k's. `generated` (lapgan's default):
the generator chain runs as sampling runs it, each G_k on the coarser levels' own (detached) image, and D_k judges
whole level images, the real I_k against the chain's. Level K, either way: the coarse G against the real low-pass
images. The levels share one optimizer per side (their losses are summed, and no weight is shared, so that is K
separate updates), and log `loss/D/level_k`, `loss/G/level_k`, `D(x)/level_k`, `D(G(z))/level_k` beside the usual
tags, which hold the mean over the levels so that runs of every model compare in one chart. Level 0 is the finest.
The schedule (n_critic, the penalty's cadence, D frozen for G, the updates) is `training.step.gan_step`'s, shared
with the image step.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from gan_cli.errors import GanError
from gan_cli.losses import GanLoss
from gan_cli.models import sample_latent
from gan_cli.models.lapgan import LapDiscriminator, LapGenerator, gaussian_pyramid, laplacian_pyramid, up
from gan_cli.parallel import per_sample
from gan_cli.training.speed import FP32, Precision, eager
from gan_cli.training.step import gan_step


def is_pyramid(G: nn.Module) -> bool:
    return isinstance(eager(G), LapGenerator)


def check_pyramid_run(cfg, world_size: int = 1) -> None:
    """What this step does not do for a pyramid, refused by name rather than skipped in silence."""
    if cfg.model.name != "lapgan":
        return
    extras = [
        f"loss.{k}={cfg.loss[k]}"
        for k, off in (("feature_matching", False), ("hist_weight", 0.0), ("ortho_weight", 0.0), ("drift", 0.0))
        if cfg.loss[k] != off
    ]
    extras += [f"train.augment=[{','.join(map(str, cfg.train.augment))}]"] if cfg.train.augment else []
    extras += ["train.d_pass=joint"] if cfg.train.d_pass == "joint" else []
    if extras:
        raise GanError(
            f"{', '.join(extras)}: model=lapgan trains each pyramid level with the objective, its penalty and n_critic only, in "
            f"passes of its own per level; drop these options for it."
        )
    if max(world_size, int(cfg.dist.nproc_per_node)) > 1:
        raise GanError(
            "model=lapgan trains its levels in one process for now (its step calls each level's D outside DDP); use dist.nproc_per_node=1."
        )


class PyramidPlay:
    """model=lapgan's levels as one play: each level's D judges its real and fake coefficients, the losses summed."""

    def __init__(
        self, G: nn.Module, D: nn.Module, loss: GanLoss, batcher, device: torch.device, amp: Precision
    ) -> None:
        G, D = eager(G), eager(D)
        assert isinstance(G, LapGenerator) and isinstance(D, LapDiscriminator)
        self.G, self.D, self.loss, self.batcher, self.device, self.amp = G, D, loss, batcher, device, amp
        self.levels = G.levels

    def draw(self, last: bool) -> None:
        G, levels = self.G, self.levels
        real, self.y = self.batcher.next()
        self.conds: list[Optional[torch.Tensor]]
        if self.D.on_generated:
            self.targets = gaussian_pyramid(real, levels)  # I_0 ... I_K
            self.conds = [None] * levels
        else:
            self.targets = laplacian_pyramid(real, levels)  # h_0 ... h_{K-1}, I_K
            self.conds = [up(self.targets[k + 1]) for k in range(levels - 1)] + [None]
        self.z = per_sample(lambda n: sample_latent(G, n, self.device), len(real))
        self.last = last

    def d_loss(self, due: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        G, D, y, conds, targets, obj, levels = (
            self.G,
            self.D,
            self.y,
            self.conds,
            self.targets,
            self.loss.objective,
            self.levels,
        )
        with torch.set_grad_enabled(self.last):  # the last fakes are kept, with their graphs, for the G step
            if D.on_generated:  # finest first, each level's gradient kept to its own G
                self.fakes = G.pyramid_outputs(self.z, y, detach=True)[::-1]
            else:
                z0, planes = G.split(self.z)
                self.fakes = [G.residuals[k](planes[k], conds[k], y) for k in range(levels - 1)] + [G.coarse(z0, y)]
        self.real_logits = [D.level(k, targets[k], conds[k], y) for k in range(levels)]
        self.fake_logits = [D.level(k, self.fakes[k].detach(), conds[k], y) for k in range(levels)]
        self.d_losses = [obj.d_loss(r, f) for r, f in zip(self.real_logits, self.fake_logits)]
        total = torch.stack(self.d_losses).sum()
        if not due:
            return total, None
        penalties = [
            self.loss.penalty(
                self.amp.penalty_fn(lambda x, k=k: D.level(k, x, conds[k], y)), targets[k], self.fakes[k].detach()
            )
            for k in range(levels)
        ]
        total = total + self.loss.penalty_every * self.loss.penalty_weight * torch.stack(penalties).sum()
        return total, torch.stack(penalties).mean()

    def g_loss(self) -> torch.Tensor:
        D, y, conds = self.D, self.y, self.conds
        self.g_logits = [D.level(k, self.fakes[k], conds[k], y) for k in range(self.levels)]
        self.g_losses = [self.loss.objective.g_loss(g) for g in self.g_logits]
        return torch.stack(self.g_losses).sum()

    def stats(self) -> dict[str, torch.Tensor]:
        obj = self.loss.objective
        stats: dict[str, torch.Tensor] = {}
        per_level = {
            "loss/D": [d.detach() for d in self.d_losses],
            "loss/G": [g.detach() for g in self.g_losses],
            "D(x)": [obj.d_output(r.detach()).mean() for r in self.real_logits],
            "D(G(z))": [obj.d_output(f.detach()).mean() for f in self.fake_logits],
        }
        for tag, values in per_level.items():
            stats[tag] = torch.stack(values).mean()
            stats.update({f"{tag}/level_{k}": v for k, v in enumerate(values)})
        estimates = [
            obj.estimate(r.detach(), f.detach(), d.detach())
            for r, f, d in zip(self.real_logits, self.fake_logits, self.d_losses)
        ]
        stats["D(G(z))/g_step"] = torch.stack([obj.d_output(g.detach()).mean() for g in self.g_logits]).mean()
        stats[obj.estimate_tag] = torch.stack(estimates).mean()
        return stats


def pyramid_step(
    G: nn.Module,
    D: nn.Module,
    loss: GanLoss,
    opt_g,
    opt_d,
    batcher,
    device: torch.device,
    amp: Precision = FP32,
    augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    step: int = 1,
) -> dict[str, torch.Tensor]:
    """One generator step of every level (`augment` is refused for the pyramid by check_pyramid_run)."""
    play = PyramidPlay(G, D, loss, batcher, device, amp)
    return gan_step(play, play.G, play.D, loss, opt_g, opt_d, device, amp, step)
