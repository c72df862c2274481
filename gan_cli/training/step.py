"""One generator step and its k discriminator steps, and the optimizer update each of them ends with.

    for i in range(loss.n_critic):  D step on a real batch and G(z)  (+ penalty on its cadence, then weight clipping)
    G step on D(G(z)) with D frozen
    statistics of the step as on-device tensors (the tracker reads them at log_every)

The step holds no global state (models, optimisers and data come in as arguments), so it runs the same under
DDP, torch.compile and autocast.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import torch
from torch import nn

from gan_cli.losses import GanLoss, mutual_info_bound, r1_from_grad
from gan_cli.models import latent_layout, sample_latent
from gan_cli.models.layers import discriminate, discriminate_pair
from gan_cli.parallel import (
    per_sample,
    unwrap,
)
from gan_cli.training.speed import FP32, Precision, eager

log = logging.getLogger("gan_cli")


def train_step(
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
    joint: bool = False,
) -> dict[str, torch.Tensor]:
    """One generator step; G and D may be torch.compile wrappers (the penalty then runs on the eager D,
    since compiled code cannot differentiate twice). `amp` adds autocast and fp16 loss scaling.

    `augment` (DiffAugment) is applied to every batch D sees, real and fake, in D's step and in G's:
    D then never sees an un-augmented image, and G's gradient flows back through the same random ops.

    `step` (counted from 1) places the D steps on one global count, so a lazy penalty (`loss.penalty_every`)
    falls on the same D steps whether or not the run was resumed in between.

    `joint` (train.d_pass=joint): D scores [real; fake] in one pass, and R1 comes from that pass (check_d_pass
    has made sure D scores each sample on its own, so only the order of float sums differs from two passes).
    """
    G_net, D_judge = unwrap(G), unwrap(D)  # G's step judges with D outside DDP (a compiled D stays compiled)
    obj, extra, layout = loss.objective, loss.extra, latent_layout(G_net)
    seen_by_d = augment or (lambda x: x)
    penalty = None
    for i in range(loss.n_critic):
        d_step = (step - 1) * loss.n_critic + i
        real, y = batcher.next()
        z = per_sample(
            lambda n: sample_latent(G_net, n, device), len(real)
        )  # a distributed run: this rank's slice of the global draw
        last = i == loss.n_critic - 1
        due = loss.penalty_due(d_step)
        r1_in_pass = (
            joint and due and loss.penalty_from_pass and eager(D) is D
        )  # a compiled D cannot differentiate twice
        opt_d.zero_grad(set_to_none=True)
        with amp.autocast():
            with torch.set_grad_enabled(last):  # the last fake batch is kept, with its graph, for the G step
                fake = G(z, y)
            real, fake_d = seen_by_d(real), seen_by_d(fake.detach())
            if joint:
                (real_logits, real_ex), (fake_logits, fake_ex), both = discriminate_pair(
                    D, real, fake_d, y, input_grad=r1_in_pass
                )
            else:
                real_logits, real_ex = discriminate(D, real, y)
                fake_logits, fake_ex = discriminate(D, fake_d, y)
            d_loss = obj.d_loss(real_logits, fake_logits)
            d_terms = extra.d_terms(
                unwrap(D), layout, real_ex, fake_ex, y, z, real_logits
            )  # ACGAN, InfoGAN, historical averaging, drift
            total = d_loss + sum(d_terms.values())
            if due:
                if r1_in_pass:
                    penalty = r1_from_grad(amp.input_grad(real_logits, both)[: len(real)])
                else:
                    penalty = loss.penalty(amp.penalty_fn(lambda x: eager(D)(x, y)), real, fake_d)
                total = total + loss.penalty_every * loss.penalty_weight * penalty
        d_grad = update(amp, "D", opt_d, total, D, measure=last)
        loss.clip_weights(D)

    opt_g.zero_grad(set_to_none=True)
    D.requires_grad_(False)  # G's update needs no gradient for D's weights
    with amp.autocast():
        g_logits, g_ex = discriminate(D_judge, seen_by_d(fake), y)
        if extra.feature_matching:  # real features from the D that G is judged by now, after its update
            with torch.no_grad():
                _, real_ex = discriminate(D_judge, real, y)
        g_loss = extra.g_adversarial(obj, g_logits, g_ex, real_ex)  # the objective's, or feature matching
        g_terms = extra.g_terms(G_net, layout, g_ex, y, z)  # ACGAN, InfoGAN, historical averaging, orthogonal reg.
    g_grad = update(amp, "G", opt_g, g_loss + sum(g_terms.values()), G)
    D.requires_grad_(True)

    stats = {
        "loss/D": total.detach(),
        "loss/G": g_loss.detach(),
        "D(x)": obj.d_output(real_logits.detach()).mean(),
        "D(G(z))": obj.d_output(fake_logits.detach()).mean(),
        "D(G(z))/g_step": obj.d_output(g_logits.detach()).mean(),
        "grad_norm/D": d_grad,
        "grad_norm/G": g_grad,
        obj.estimate_tag: obj.estimate(real_logits.detach(), fake_logits.detach(), d_loss.detach()),
    }
    if loss.penalty is not None:
        # A lazy penalty is logged when it ran and as 0 otherwise (weighted by penalty_every, the mean is the pull)
        stats["loss/penalty"] = (
            penalty.detach() * loss.penalty_every if penalty is not None else torch.zeros((), device=device)
        )
    stats.update({k: v.detach() for k, v in {**d_terms, **g_terms}.items()})
    if "q_cat" in g_ex:
        stats["estimate/mutual_info"] = mutual_info_bound(g_ex, z, layout).detach()
    stats.update(amp.overflow_flag(d_grad, g_grad))
    return stats


def grad_norm(module: nn.Module) -> torch.Tensor:
    """The L2 norm of all of a module's gradients, in one multi-tensor kernel (0 when none were computed)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


def update(
    amp, net: str, opt: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module, measure: bool = True
) -> Optional[torch.Tensor]:
    """One optimizer step of G or D (`net`) under `amp`'s loss scaling; with `measure`, the gradients are unscaled first and
    their norm returned (what `grad_norm/D`, `grad_norm/G` log), else None."""
    amp.backward(net, loss)
    norm = None
    if measure:
        amp.unscale(net, opt)
        norm = grad_norm(module)
    amp.step(net, opt)
    return norm
