"""Every adversarial objective, penalty and constraint: the one registry of losses, and `build_loss`.

`objectives` holds the games and their registry, `penalties` D's gradient penalties, `terms` the extra terms;
this face puts them together as a `GanLoss`.

All objectives read the same inputs, the discriminator's raw outputs (logits) on a real and a
fake batch, so the loss and the architecture are independent axes. The BCE family uses the
softplus forms (log sigmoid(t) = -softplus(-t)), which stay finite where sigmoid saturates and
are safe under autocast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from gan_cli.components import target_args
from gan_cli.contracts import Objective as ObjectiveContract
from gan_cli.contracts import missing_members
from gan_cli.errors import GanError, one_of
from gan_cli.losses.objectives import OBJECTIVES, Objective
from gan_cli.losses.penalties import PENALTIES, DFn, gradient_penalty, r1_from_grad, r1_penalty
from gan_cli.losses.terms import ExtraTerms, mutual_info_bound, orthogonal_regularisation
from gan_cli.schedules import SCHEDULES

__all__ = [
    "OBJECTIVES",
    "PENALTIES",
    "ExtraTerms",
    "GanLoss",
    "Objective",
    "build_loss",
    "build_objective",
    "gradient_penalty",
    "mutual_info_bound",
    "orthogonal_regularisation",
    "r1_from_grad",
    "r1_penalty",
]


@dataclass
class GanLoss:
    """An objective plus D's regulariser: k D steps per G step, a penalty term, weight clipping."""

    objective: Objective
    n_critic: int
    penalty: Optional[Callable[[DFn, torch.Tensor, torch.Tensor], torch.Tensor]]
    penalty_weight: float
    clip: Optional[float]
    extra: ExtraTerms = field(default_factory=ExtraTerms)
    penalty_every: int = 1

    def penalty_due(self, d_step: int) -> bool:
        """Lazy regularisation (StyleGAN2, Karras et al. 2020): the penalty, the costly double backward, runs on
        every `penalty_every`-th D step only, weighted by `penalty_every` so its average pull stays the same."""
        return self.penalty is not None and d_step % self.penalty_every == 0

    @property
    def penalty_from_pass(self) -> bool:
        """R1 reads D's input gradient at the real samples, which a joint pass over [real; fake] has already run D
        on: it can be taken from that pass (r1_from_grad). The other penalties score points of their own."""
        return self.penalty is r1_penalty

    def clip_weights(self, D: nn.Module) -> None:
        """WGAN's crude Lipschitz constraint, applied after every critic step."""
        if self.clip is not None:
            with torch.no_grad():
                for p in D.parameters():
                    p.clamp_(-self.clip, self.clip)


def build_objective(cfg) -> Objective:
    """The game `cfg` (a LossConfig) names: a built-in objective, or the user's `_target_` checked against the contract."""
    component = OBJECTIVES.of(cfg)
    if component.target is None:
        return component.build(cfg)
    try:
        objective = component.build(cfg)
    except (TypeError, ValueError) as exc:
        raise GanError(
            f"loss._target_={component.target!r} could not be built from loss.args={target_args(cfg)}: {exc}."
        ) from exc
    missing = missing_members(objective, ObjectiveContract)
    if missing:
        raise GanError(
            f"loss._target_={component.target!r} returned a {type(objective).__name__} that breaks gan's Objective contract "
            f"(gan_cli/contracts.py): it lacks {', '.join(missing)}. Subclassing gan_cli.losses.Objective gives the defaults."
        )
    return objective


def build_loss(cfg) -> GanLoss:
    """A GanLoss from a LossConfig, with every value checked."""
    if cfg.penalty not in PENALTIES:
        raise one_of("loss.penalty", cfg.penalty, PENALTIES)
    if cfg.n_critic < 1:
        raise GanError(f"loss.n_critic={cfg.n_critic} must be at least 1 (discriminator steps per generator step).")
    if cfg.penalty_weight < 0:
        raise GanError(f"loss.penalty_weight={cfg.penalty_weight} must be >= 0.")
    if cfg.penalty_every < 1:
        raise GanError(
            f"loss.penalty_every={cfg.penalty_every} must be at least 1: the penalty runs on every n-th D step "
            f"(1 = every step; StyleGAN2 uses 16 for R1)."
        )
    if cfg.clip is not None and cfg.clip <= 0:
        raise GanError(f"loss.clip={cfg.clip} must be a positive bound (or null for no clipping).")
    objective = build_objective(cfg)
    if cfg.label_smoothing:
        if not 0.0 < cfg.label_smoothing < 1.0:
            raise GanError(
                f"loss.label_smoothing={cfg.label_smoothing} must be in [0, 1) (0.1 to 0.3 is usual; D's real target becomes 1 - s)."
            )
        if not hasattr(objective, "real_target") or "label_smoothing" not in OBJECTIVES.of(cfg).uses:
            smoothable = [name for name in OBJECTIVES if "label_smoothing" in OBJECTIVES.get(name).uses]
            raise GanError(
                f"loss.label_smoothing={cfg.label_smoothing} needs an objective with a real target ({', '.join(smoothable)}); "
                f"loss.objective={cfg.objective} has none. Set loss.label_smoothing=0."
            )
        objective.real_target = 1.0 - float(cfg.label_smoothing)
    for key in ("hist_weight", "ortho_weight", "aux_weight", "info_weight", "drift"):
        if cfg[key] < 0:
            raise GanError(f"loss.{key}={cfg[key]} must be >= 0 (0 turns the term off).")
    if cfg.info_schedule not in SCHEDULES:
        raise one_of("loss.info_schedule", cfg.info_schedule, SCHEDULES)
    extra = ExtraTerms(
        bool(cfg.feature_matching),
        float(cfg.aux_weight),
        float(cfg.info_weight),
        float(cfg.hist_weight),
        float(cfg.ortho_weight),
        bool(cfg.aux_on_fake),
        float(cfg.drift),
        str(cfg.info_schedule),
    )
    return GanLoss(
        objective,
        cfg.n_critic,
        PENALTIES[cfg.penalty],
        float(cfg.penalty_weight),
        cfg.clip,
        extra,
        int(cfg.penalty_every),
    )
