"""The training step of `model=lapgan`: every level of the Laplacian pyramid is a GAN of its own, trained on the
real pyramid coefficients of the same batch, with the run's objective, penalty and n_critic.

Level k < K: G_k turns a noise plane and the real up(I_{k+1}) into a residual; D_k judges (up(I_{k+1}), h_k) pairs,
real residuals against G_k's. Level K: the coarse G against the real low-pass images. The levels share one
optimizer per side (their losses are summed, and no weight is shared, so that is K separate updates), and log
`loss/D/level_k`, `loss/G/level_k`, `D(x)/level_k`, `D(G(z))/level_k` beside the usual tags, which hold the mean
over the levels so that runs of every model compare in one chart. Level 0 is the finest.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from gan_cli.errors import GanError
from gan_cli.losses import GanLoss
from gan_cli.models import sample_latent
from gan_cli.models.lapgan import LapDiscriminator, LapGenerator, laplacian_pyramid, up
from gan_cli.parallel import per_sample
from gan_cli.training.speed import FP32, Precision, eager
from gan_cli.training.step import update


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
    G, D = eager(G), eager(D)
    assert isinstance(G, LapGenerator) and isinstance(D, LapDiscriminator)
    obj, levels = loss.objective, G.levels
    penalty = None
    for i in range(loss.n_critic):
        d_step = (step - 1) * loss.n_critic + i
        real, y = batcher.next()
        targets = laplacian_pyramid(real, levels)  # h_0 ... h_{K-1}, I_K
        conds: list[Optional[torch.Tensor]] = [up(targets[k + 1]) for k in range(levels - 1)] + [None]
        z = per_sample(lambda n: sample_latent(G, n, device), len(real))
        z0, planes = G.split(z)
        last = i == loss.n_critic - 1
        opt_d.zero_grad(set_to_none=True)
        with amp.autocast():
            with torch.set_grad_enabled(last):  # the last fakes are kept, with their graphs, for the G step
                fakes = [G.residuals[k](planes[k], conds[k], y) for k in range(levels - 1)] + [G.coarse(z0, y)]
            real_logits = [D.level(k, targets[k], conds[k], y) for k in range(levels)]
            fake_logits = [D.level(k, fakes[k].detach(), conds[k], y) for k in range(levels)]
            d_losses = [obj.d_loss(r, f) for r, f in zip(real_logits, fake_logits)]
            total = torch.stack(d_losses).sum()
            if loss.penalty_due(d_step):
                penalties = [
                    loss.penalty(
                        amp.penalty_fn(lambda x, k=k: D.level(k, x, conds[k], y)), targets[k], fakes[k].detach()
                    )
                    for k in range(levels)
                ]
                penalty = torch.stack(penalties).mean()
                total = total + loss.penalty_every * loss.penalty_weight * torch.stack(penalties).sum()
        d_grad = update(amp, "D", opt_d, total, D, measure=last)
        loss.clip_weights(D)

    opt_g.zero_grad(set_to_none=True)
    D.requires_grad_(False)
    with amp.autocast():
        g_logits = [D.level(k, fakes[k], conds[k], y) for k in range(levels)]
        g_losses = [obj.g_loss(g) for g in g_logits]
        g_total = torch.stack(g_losses).sum()
    g_grad = update(amp, "G", opt_g, g_total, G)
    D.requires_grad_(True)

    stats: dict[str, torch.Tensor] = {}
    per_level = {
        "loss/D": [d.detach() for d in d_losses],
        "loss/G": [g.detach() for g in g_losses],
        "D(x)": [obj.d_output(r.detach()).mean() for r in real_logits],
        "D(G(z))": [obj.d_output(f.detach()).mean() for f in fake_logits],
    }
    for tag, values in per_level.items():
        stats[tag] = torch.stack(values).mean()
        stats.update({f"{tag}/level_{k}": v for k, v in enumerate(values)})
    estimates = [
        obj.estimate(r.detach(), f.detach(), d.detach()) for r, f, d in zip(real_logits, fake_logits, d_losses)
    ]
    stats.update(
        {
            "D(G(z))/g_step": torch.stack([obj.d_output(g.detach()).mean() for g in g_logits]).mean(),
            "grad_norm/D": d_grad,
            "grad_norm/G": g_grad,
            obj.estimate_tag: torch.stack(estimates).mean(),
        }
    )
    if loss.penalty is not None:
        stats["loss/penalty"] = (
            penalty.detach() * loss.penalty_every if penalty is not None else torch.zeros((), device=device)
        )
    stats.update(amp.overflow_flag(d_grad, g_grad))
    return stats
