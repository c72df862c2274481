"""One generator step and its k discriminator steps: the skeleton every kind of step shares, and the image step.

    for i in range(loss.n_critic):  draw a real batch and z;  D step  (+ penalty on its cadence, then weight clipping)
    G step on D(G(z)) with D frozen
    statistics of the step as on-device tensors (the tracker reads them at log_every)

`gan_step` owns the schedule (the critic count, the lazy penalty's cadence on one global count of D steps, D frozen
for G's update, the update itself, the statistics every step logs); a `Play` says how D and G are scored on one
batch: `ImagePlay` here, `training.pyramid.PyramidPlay` for model=lapgan's levels. The step holds no global state
(models, optimisers and data come in as arguments), so it runs the same under DDP, torch.compile and autocast.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol

import torch
from torch import nn

from gan_cli.losses import GanLoss, mutual_info_bound, r1_from_grad
from gan_cli.models import latent_layout, sample_latent
from gan_cli.models.layers import discriminate, discriminate_pair
from gan_cli.parallel import per_sample, unwrap
from gan_cli.training.speed import FP32, Precision, eager


class Play(Protocol):
    """How one kind of step scores D and G; it keeps what the G pass and the statistics need between the calls."""

    def draw(self, last: bool) -> None:
        """This D step's real batch and latents (outside autocast); `last`: the fakes then keep their graph for G."""

    def d_loss(self, due: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(D's loss with its terms and, when `due`, the weighted penalty; the unweighted penalty or None)."""

    def g_loss(self) -> torch.Tensor:
        """G's loss on the last D step's fakes, judged by the D that was just updated."""

    def stats(self) -> dict[str, torch.Tensor]:
        """The play's own statistics of the step (losses, D(x), D(G(z)), estimates), detached."""


def gan_step(play: Play, G: nn.Module, D: nn.Module, loss: GanLoss, opt_g, opt_d, device: torch.device,
             amp: Precision, step: int) -> dict[str, torch.Tensor]:  # fmt: skip
    """The schedule of one generator step (counted from 1): `step` places the D steps on one global count, so a lazy
    penalty (`loss.penalty_every`) falls on the same D steps whether or not the run was resumed in between."""
    penalty = None
    for i in range(loss.n_critic):
        last = i == loss.n_critic - 1
        play.draw(last)
        opt_d.zero_grad(set_to_none=True)
        with amp.autocast():
            total, ran = play.d_loss(loss.penalty_due((step - 1) * loss.n_critic + i))
        penalty = ran if ran is not None else penalty
        d_grad = update(amp, "D", opt_d, total, D, measure=last)
        loss.clip_weights(D)

    opt_g.zero_grad(set_to_none=True)
    D.requires_grad_(False)  # G's update needs no gradient for D's weights
    with amp.autocast():
        g_total = play.g_loss()
    g_grad = update(amp, "G", opt_g, g_total, G)
    D.requires_grad_(True)

    stats = {**play.stats(), "grad_norm/D": d_grad, "grad_norm/G": g_grad}
    if loss.penalty is not None:
        # A lazy penalty is logged when it ran and as 0 otherwise (weighted by penalty_every, the mean is the pull)
        zero = torch.zeros((), device=device)
        stats["loss/penalty"] = penalty.detach() * loss.penalty_every if penalty is not None else zero
    stats.update(amp.overflow_flag(d_grad, g_grad))
    return stats


def grad_norm(module: nn.Module) -> torch.Tensor:
    """The L2 norm of all of a module's gradients, in one multi-tensor kernel (0 when none were computed)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


def update(
    amp, net: str, opt: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module, measure: bool = True
) -> Optional[torch.Tensor]:
    """One optimizer step of G or D (`net`) under `amp`'s loss scaling; with `measure`, the gradients are unscaled
    first and their norm returned (what `grad_norm/D`, `grad_norm/G` log), else None."""
    amp.backward(net, loss)
    norm = None
    if measure:
        amp.unscale(net, opt)
        norm = grad_norm(module)
    amp.step(net, opt)
    return norm


class ImagePlay:
    """A G and a D over whole samples (images or points), with the objective's extra terms (ACGAN, InfoGAN,
    historical averaging, drift, feature matching, orthogonal regularisation) and DiffAugment on every batch D sees.

    G and D may be torch.compile wrappers (the penalty then runs on the eager D, since compiled code cannot
    differentiate twice). `joint` (train.d_pass=joint): D scores [real; fake] in one pass, and R1 comes from that
    pass (check_d_pass has made sure D scores each sample on its own, so only the order of float sums differs)."""

    def __init__(self, G: nn.Module, D: nn.Module, loss: GanLoss, batcher, device: torch.device, amp: Precision,
                 augment: Optional[Callable[[torch.Tensor], torch.Tensor]], joint: bool) -> None:  # fmt: skip
        self.G, self.D, self.loss, self.batcher, self.device, self.amp, self.joint = (
            G,
            D,
            loss,
            batcher,
            device,
            amp,
            joint,
        )
        self.G_net, self.D_judge = (
            unwrap(G),
            unwrap(D),
        )  # G's step judges with D outside DDP (a compiled D stays compiled)
        self.layout = latent_layout(self.G_net)
        self.seen_by_d = augment or (lambda x: x)

    def draw(self, last: bool) -> None:
        self.real, self.y = self.batcher.next()
        # a distributed run: this rank's slice of the global draw
        self.z = per_sample(lambda n: sample_latent(self.G_net, n, self.device), len(self.real))
        self.last = last

    def d_loss(self, due: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        D, y, extra = self.D, self.y, self.loss.extra
        r1_in_pass = self.joint and due and self.loss.penalty_from_pass and eager(D) is D  # compiled D: no double grad
        with torch.set_grad_enabled(self.last):  # the last fake batch is kept, with its graph, for the G step
            self.fake = self.G(self.z, y)
        self.real, fake_d = self.seen_by_d(self.real), self.seen_by_d(self.fake.detach())
        if self.joint:
            (real_logits, real_ex), (fake_logits, fake_ex), both = discriminate_pair(
                D, self.real, fake_d, y, input_grad=r1_in_pass
            )
        else:
            real_logits, real_ex = discriminate(D, self.real, y)
            fake_logits, fake_ex = discriminate(D, fake_d, y)
        self.d_adv = self.loss.objective.d_loss(real_logits, fake_logits)
        # ACGAN, InfoGAN, historical averaging, drift
        self.d_terms = extra.d_terms(unwrap(D), self.layout, real_ex, fake_ex, y, self.z, real_logits)
        self.real_logits, self.fake_logits = real_logits, fake_logits
        self.total = self.d_adv + sum(self.d_terms.values())
        penalty = None
        if due:
            if r1_in_pass:
                penalty = r1_from_grad(self.amp.input_grad(real_logits, both)[: len(self.real)])
            else:
                penalty = self.loss.penalty(self.amp.penalty_fn(lambda x: eager(D)(x, y)), self.real, fake_d)
            self.total = self.total + self.loss.penalty_every * self.loss.penalty_weight * penalty
        return self.total, penalty

    def g_loss(self) -> torch.Tensor:
        extra, y = self.loss.extra, self.y
        self.g_logits, self.g_ex = discriminate(self.D_judge, self.seen_by_d(self.fake), y)
        real_ex = None
        if extra.feature_matching:  # real features from the D that G is judged by now, after its update
            with torch.no_grad():
                _, real_ex = discriminate(self.D_judge, self.real, y)
        self.g_adv = extra.g_adversarial(self.loss.objective, self.g_logits, self.g_ex, real_ex)
        # ACGAN, InfoGAN, historical averaging, orthogonal regularisation
        self.g_terms = extra.g_terms(self.G_net, self.layout, self.g_ex, y, self.z)
        return self.g_adv + sum(self.g_terms.values())

    def stats(self) -> dict[str, torch.Tensor]:
        obj = self.loss.objective
        real_logits, fake_logits = self.real_logits.detach(), self.fake_logits.detach()
        stats = {
            "loss/D": self.total.detach(),
            "loss/G": self.g_adv.detach(),
            "D(x)": obj.d_output(real_logits).mean(),
            "D(G(z))": obj.d_output(fake_logits).mean(),
            "D(G(z))/g_step": obj.d_output(self.g_logits.detach()).mean(),
            obj.estimate_tag: obj.estimate(real_logits, fake_logits, self.d_adv.detach()),
        }
        stats.update({k: v.detach() for k, v in {**self.d_terms, **self.g_terms}.items()})
        if "q_cat" in self.g_ex:
            stats["estimate/mutual_info"] = mutual_info_bound(self.g_ex, self.z, self.layout).detach()
        return stats


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
    """One generator step of an image (or point) GAN; `amp` adds autocast and fp16 loss scaling; `augment`
    (DiffAugment) is applied to every batch D sees, real and fake, in D's step and in G's."""
    play = ImagePlay(G, D, loss, batcher, device, amp, augment, joint)
    return gan_step(play, G, D, loss, opt_g, opt_d, device, amp, step)
