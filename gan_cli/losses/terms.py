"""The loss terms beyond the objective and the penalty: auxiliary heads (ACGAN, InfoGAN) and the improved-training
techniques (feature matching, historical averaging, orthogonal regularisation, drift)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli.errors import GanError
from gan_cli.losses.objectives import Objective
from gan_cli.schedules import lr_factor

Extras = dict[str, torch.Tensor]  # what a D head returns besides the logit (gan_cli.models.layers)


def info_loss(q: Extras, z: torch.Tensor, layout) -> torch.Tensor:
    """InfoGAN's -L_I up to a constant: cross-entropy of the categorical code + Gaussian NLL (unit variance) of the continuous ones."""
    cat, cont = layout.codes(z)
    loss = torch.zeros((), device=z.device)
    if cat is not None:
        loss = loss + F.cross_entropy(q["q_cat"], cat)
    if cont is not None:
        loss = loss + 0.5 * (q["q_cont"] - cont).square().sum(1).mean()
    return loss


def mutual_info_bound(q: Extras, z: torch.Tensor, layout) -> torch.Tensor:
    """L_I = H(c) + E log Q(c | G(z, c)) <= I(c; G(z, c)): grows as Q recovers the codes (log n_cat at best for the categorical one)."""
    entropy = math.log(layout.n_cat) if layout.n_cat else 0.0
    entropy += layout.n_cont * (math.log(2.0) - 0.5 * math.log(2 * math.pi))  # H(U(-1, 1)) minus the NLL's constant
    return entropy - info_loss(q, z, layout)


def orthogonal_regularisation(module: nn.Module) -> torch.Tensor:
    """BigGAN's variant: sum over weights of ||W W^T * (1 - I)||_F^2 (filters pushed apart, norms left free)."""
    terms = []
    for p in module.parameters():
        if p.ndim >= 2:
            w = p.flatten(1)
            terms.append((w @ w.T * (1 - torch.eye(len(w), device=p.device, dtype=p.dtype))).square().sum())
    return torch.stack(terms).sum()


@dataclass
class ExtraTerms:
    """The loss terms beyond the objective and the penalty, each computed by one small method.

    Auxiliary terms follow D's heads: a class head adds ACGAN's loss, a Q head InfoGAN's. The
    historical averages are running means of every parameter, kept here (and in checkpoints).
    """

    feature_matching: bool = False
    aux_weight: float = 1.0
    info_weight: float = 1.0
    hist_weight: float = 0.0
    ortho_weight: float = 0.0
    aux_on_fake: bool = False
    drift: float = 0.0
    info_schedule: str = "constant"
    info_scale: float = 1.0  # the info schedule's multiplier of info_weight at the current step (set by at_step)
    history: dict = field(default_factory=dict)

    def at_step(self, step: int, total: int) -> None:
        """Move the scheduled weights to generator step `step` (counted from 1) of `total`.

        InfoGAN's term spreads G's clusters apart while they find their modes; at the end the same pull keeps
        two codes that share a mode beside each other, off the mode. loss.info_schedule decays it to 0 at the
        last step, by the shape of the lr schedules. A pure function of the step: a resumed run gets the same.
        """
        self.info_scale = lr_factor(self.info_schedule, step - 1, total)

    def scheduled(self) -> dict[str, float]:
        """The weights that move with the step, for TensorBoard (nothing while none does)."""
        return {"weight/info": self.info_weight * self.info_scale} if self.info_schedule != "constant" else {}

    def check_fits(self, D: nn.Module) -> None:
        if self.feature_matching and not hasattr(D, "forward_with_extras"):
            raise GanError(
                "loss.feature_matching=true needs a discriminator with intermediate features; model=shift has none. Use model=mlp, dcgan or style."
            )

    def d_terms(
        self, D: nn.Module, layout, real_ex: Extras, fake_ex: Extras, y, z: torch.Tensor, real_logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        if self.drift:  # ProGAN: a small pull of D(x) towards 0, so a Wasserstein critic's outputs cannot drift off
            terms["loss/drift"] = self.drift * real_logits.float().square().mean()
        if "class_logits" in real_ex:  # ACGAN: D's class head learns the classes
            ce = F.cross_entropy(real_ex["class_logits"], y)
            if self.aux_on_fake:  # the paper's loss; the head may then learn whatever mark G puts on its fakes
                ce = ce + F.cross_entropy(fake_ex["class_logits"], y)
            terms["loss/ac"] = self.aux_weight * ce
        if "q_cat" in fake_ex:  # InfoGAN: Q (on D's body) learns to recover the codes
            terms["loss/info"] = self.info_weight * self.info_scale * info_loss(fake_ex, z, layout)
        if self.hist_weight:
            terms["loss/hist_D"] = self.hist_weight * self._historical(D, "D")
        return terms

    def g_adversarial(self, obj: Objective, g_logits: torch.Tensor, g_ex: Extras, real_ex: Extras) -> torch.Tensor:
        """G's loss against D: the objective's, or feature matching ||E f(x) - E f(G(z))||^2 on D's features."""
        if self.feature_matching:
            return (real_ex["features"].detach().mean(0) - g_ex["features"].mean(0)).square().sum()
        return obj.g_loss(g_logits)

    def g_terms(self, G: nn.Module, layout, g_ex: Extras, y, z: torch.Tensor) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        if "class_logits" in g_ex:
            terms["loss/ac_G"] = self.aux_weight * F.cross_entropy(g_ex["class_logits"], y)
        if "q_cat" in g_ex:
            terms["loss/info_G"] = self.info_weight * self.info_scale * info_loss(g_ex, z, layout)
        if self.hist_weight:
            terms["loss/hist_G"] = self.hist_weight * self._historical(G, "G")
        if self.ortho_weight:
            terms["loss/ortho"] = self.ortho_weight * orthogonal_regularisation(G)
        return terms

    def _historical(self, module: nn.Module, key: str) -> torch.Tensor:
        """||theta - (1/t) sum_i theta_i||^2, the running mean updated in place (no host sync)."""
        params = [p for p in module.parameters() if p.requires_grad]
        state = self.history.get(key)
        if state is None or len(state["mean"]) != len(params):
            state = self.history[key] = {"count": 0, "mean": [p.detach().clone() for p in params]}
        state["count"] += 1
        with torch.no_grad():
            for m, p in zip(state["mean"], params):
                m.add_((p.detach() - m) / state["count"])
        return sum((p - m).square().sum() for p, m in zip(params, state["mean"]))

    def state_dict(self) -> dict:
        return self.history

    def load_state_dict(self, state: dict) -> None:
        self.history = {k: {"count": int(v["count"]), "mean": list(v["mean"])} for k, v in state.items()}
