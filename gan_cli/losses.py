"""Every adversarial objective, penalty and constraint: the one registry of losses.

All objectives read the same inputs, the discriminator's raw outputs (logits) on a real and a
fake batch, so the loss and the architecture are independent axes. The BCE family uses the
softplus forms (log sigmoid(t) = -softplus(-t)), which stay finite where sigmoid saturates and
are safe under autocast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli.errors import GanError, one_of

LOG4 = math.log(4.0)


class Objective:
    """An adversarial game: D's loss, G's loss, and what D's optimum estimates."""

    name: str = ""
    outputs_probability = False  # D(x) = sigmoid(logit) is a probability (BCE family) rather than a raw critic value
    estimate_tag = "estimate/critic_gap"

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def estimate(self, real: torch.Tensor, fake: torch.Tensor, d_loss: torch.Tensor) -> torch.Tensor:
        """The divergence estimate of the current D (a lower bound when D is not optimal)."""
        return real.mean() - fake.mean()

    def d_output(self, logits: torch.Tensor) -> torch.Tensor:
        """What the `D(x)` / `D(G(z))` scalars show."""
        return torch.sigmoid(logits) if self.outputs_probability else logits


class Minimax(Objective):
    """Goodfellow et al. 2014: max_D E log D(x) + E log(1 - D(G(z))); G minimises the same value."""

    name = "minimax"
    outputs_probability = True
    estimate_tag = "estimate/jsd"

    def d_loss(self, real, fake):
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def g_loss(self, fake):
        return -F.softplus(fake).mean()  # = E log(1 - D(G(z))): flat where D confidently rejects G's samples

    def estimate(self, real, fake, d_loss):
        # V(D, G) = -d_loss; at the optimal D, V = -log 4 + 2 JSD(p_data || p_g)
        return (LOG4 - d_loss) / 2


class NonSaturating(Minimax):
    """Same D; G maximises log D(G(z)) instead, which has strong gradients early in training."""

    name = "ns"

    def g_loss(self, fake):
        return F.softplus(-fake).mean()


class Wasserstein(Objective):
    """WGAN: the critic maximises E D(x) - E D(G(z)), an estimate of W1 when D is 1-Lipschitz."""

    name = "wasserstein"
    estimate_tag = "estimate/wasserstein"

    def d_loss(self, real, fake):
        return fake.mean() - real.mean()

    def g_loss(self, fake):
        return -fake.mean()


class LeastSquares(Objective):
    """LSGAN with 0-1 coding: D regresses real -> 1 and fake -> 0; G pushes D(G(z)) -> 1."""

    name = "lsgan"

    def d_loss(self, real, fake):
        return 0.5 * ((real - 1).square().mean() + fake.square().mean())

    def g_loss(self, fake):
        return 0.5 * (fake - 1).square().mean()


class Hinge(Objective):
    """Hinge loss (Geometric GAN, SNGAN, SAGAN)."""

    name = "hinge"

    def d_loss(self, real, fake):
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_loss(self, fake):
        return -fake.mean()


OBJECTIVES: dict[str, type[Objective]] = {c.name: c for c in (Minimax, NonSaturating, Wasserstein, LeastSquares, Hinge)}

DFn = Callable[[torch.Tensor], torch.Tensor]


def gradient_penalty(d_fn: DFn, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: E[(||grad_x D(x_hat)||_2 - 1)^2] on uniform interpolates between real and fake samples."""
    eps = torch.rand(len(real), *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(d_fn(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).square().mean()


PENALTIES: dict[str, Optional[Callable[[DFn, torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "none": None,
    "gp": gradient_penalty,
}


@dataclass
class GanLoss:
    """An objective plus D's regulariser: k D steps per G step, a penalty term, weight clipping."""

    objective: Objective
    n_critic: int
    penalty: Optional[Callable[[DFn, torch.Tensor, torch.Tensor], torch.Tensor]]
    penalty_weight: float
    clip: Optional[float]

    def clip_weights(self, D: nn.Module) -> None:
        """WGAN's crude Lipschitz constraint, applied after every critic step."""
        if self.clip is not None:
            with torch.no_grad():
                for p in D.parameters():
                    p.clamp_(-self.clip, self.clip)


def build_loss(cfg) -> GanLoss:
    """A GanLoss from a LossConfig, with every value checked."""
    if cfg.objective not in OBJECTIVES:
        raise one_of("loss.objective", cfg.objective, OBJECTIVES)
    if cfg.penalty not in PENALTIES:
        raise one_of("loss.penalty", cfg.penalty, PENALTIES)
    if cfg.n_critic < 1:
        raise GanError(f"loss.n_critic={cfg.n_critic} must be at least 1 (discriminator steps per generator step).")
    if cfg.penalty_weight < 0:
        raise GanError(f"loss.penalty_weight={cfg.penalty_weight} must be >= 0.")
    if cfg.clip is not None and cfg.clip <= 0:
        raise GanError(f"loss.clip={cfg.clip} must be a positive bound (or null for no clipping).")
    return GanLoss(OBJECTIVES[cfg.objective](), cfg.n_critic, PENALTIES[cfg.penalty], float(cfg.penalty_weight), cfg.clip)
