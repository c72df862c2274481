"""Every adversarial objective, penalty and constraint: the one registry of losses.

All objectives read the same inputs, the discriminator's raw outputs (logits) on a real and a
fake batch, so the loss and the architecture are independent axes. The BCE family uses the
softplus forms (log sigmoid(t) = -softplus(-t)), which stay finite where sigmoid saturates and
are safe under autocast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli.components import Registry, target_args
from gan_cli.contracts import Objective as ObjectiveContract
from gan_cli.contracts import missing_members
from gan_cli.errors import GanError, one_of
from gan_cli.parallel import per_sample
from gan_cli.schedules import SCHEDULES, lr_factor

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

DFn = Callable[[torch.Tensor], torch.Tensor]


def _input_grad(d_fn: DFn, x: torch.Tensor) -> torch.Tensor:
    """grad_x D(x), differentiable so a penalty on it can be minimised."""
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(d_fn(x).sum(), x, create_graph=True)[0]


def _input_grad_norms(d_fn: DFn, x: torch.Tensor) -> torch.Tensor:
    """||grad_x D(x)||_2 per sample."""
    return _per_sample_norms(_input_grad(d_fn, x))


def _per_sample_norms(grad: torch.Tensor) -> torch.Tensor:
    return grad.flatten(1).norm(2, dim=1)


def _per_sample_uniform(x: torch.Tensor) -> torch.Tensor:
    """One U(0, 1) per sample (per_sample: in a distributed run, this rank's slice of the global batch's draw)."""
    return per_sample(lambda n: torch.rand(n, *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype), len(x))


def gradient_penalty(d_fn: DFn, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: E[(||grad_x D(x_hat)||_2 - 1)^2] on uniform interpolates between real and fake samples."""
    eps = _per_sample_uniform(real)
    x_hat = eps * real.detach() + (1 - eps) * fake.detach()
    return (_input_grad_norms(d_fn, x_hat) - 1).square().mean()


def dragan_penalty(d_fn: DFn, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """DRAGAN (Kodali et al. 2017): the same norm-1 penalty, but only in a noisy neighbourhood of the real data.

    Perturbed points x + 0.5 std(x) u, u ~ U(0, 1), are mixed with x; keeping D's gradients
    tame around real samples is what the paper credits for fewer mode collapses.
    """
    real = real.detach()
    noise = per_sample(lambda n: torch.rand(n, *real.shape[1:], device=real.device, dtype=real.dtype), len(real))
    perturbed = real + 0.5 * real.std() * noise
    alpha = _per_sample_uniform(real)
    return (_input_grad_norms(d_fn, real + alpha * (perturbed - real)) - 1).square().mean()


def r1_penalty(d_fn: DFn, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E ||grad_x D(x)||^2 on real data only; loss.penalty_weight is gamma / 2."""
    return r1_from_grad(_input_grad(d_fn, real))


def r1_from_grad(real_grad: torch.Tensor) -> torch.Tensor:
    """R1 from D's input gradient at the real batch: r1_penalty's own pass, or one D has already run (train.d_pass=joint)."""
    return _per_sample_norms(real_grad).square().mean()


PENALTIES: dict[str, Optional[Callable[[DFn, torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "none": None,
    "gp": gradient_penalty,
    "dragan": dragan_penalty,
    "r1": r1_penalty,
}


# ---------------------------------------------------------------------------------------------
# extra terms: auxiliary heads (ACGAN, InfoGAN) and the improved-training techniques
# ---------------------------------------------------------------------------------------------
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
