"""The adversarial objectives (minimax, non-saturating, Wasserstein, least squares, hinge) and their registry.

All objectives read the same inputs, the discriminator's raw outputs (logits) on a real and a fake batch, so the
loss and the architecture are independent axes. The BCE family uses the softplus forms (log sigmoid(t) =
-softplus(-t)), which stay finite where sigmoid saturates and are safe under autocast."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from gan_cli.components import Registry, target_args

LOG4 = math.log(4.0)


class Objective:
    """An adversarial game: D's loss, G's loss, and what D's optimum estimates."""

    name: str = ""
    real_target = 1.0  # below 1 with one-sided label smoothing (set by build_loss where the objective has targets)
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
        t = self.real_target  # BCE(real, t): t = 1 gives -log D(x)
        real_term = (
            F.softplus(-real).mean() if t == 1.0 else (t * F.softplus(-real) + (1 - t) * F.softplus(real)).mean()
        )
        return real_term + F.softplus(fake).mean()

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
        return 0.5 * ((real - self.real_target).square().mean() + fake.square().mean())

    def g_loss(self, fake):
        return 0.5 * (fake - 1).square().mean()


class Hinge(Objective):
    """Hinge loss (Geometric GAN, SNGAN, SAGAN)."""

    name = "hinge"

    def d_loss(self, real, fake):
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_loss(self, fake):
        return -fake.mean()


def _from_target(make: Callable[..., Objective]) -> Callable[..., Objective]:
    return lambda cfg: make(**target_args(cfg))


# the keys every objective reads: the penalty, constraint and extra terms wrap whatever game is played
_LOSS_KEYS = (
    "objective",
    "n_critic",
    "penalty",
    "penalty_weight",
    "penalty_every",
    "clip",
    "feature_matching",
    "hist_weight",
    "ortho_weight",
    "aux_weight",
    "aux_on_fake",
    "info_weight",
    "info_schedule",
    "drift",
)
OBJECTIVES = Registry(
    "loss", "objective", shared=_LOSS_KEYS, target_uses=("_target_", "args", "label_smoothing"), adapt=_from_target
)
for _objective in (Minimax, NonSaturating, Wasserstein, LeastSquares, Hinge):
    # one-sided label smoothing needs a real target, which the BCE family and LSGAN have
    OBJECTIVES.add(
        _objective.name,
        lambda cfg, cls=_objective: cls(),
        uses=("label_smoothing",) if _objective.name in ("minimax", "ns", "lsgan") else (),
    )
