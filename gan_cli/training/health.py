"""Training health: cheap detectors that watch a run for the ways GAN training quietly goes wrong, and say so once.

A run that diverges stops on its own (NaN); the harder runs are those that keep training while going nowhere: D wins
and G's gradient vanishes, G collapses onto a few outputs, the gradients or the penalty explode, the two networks
circle, a toy's modes are lost. Each detector here reads only what the loop already has: the window means the
tracker syncs at `train.log_every` (D(x), D(G(z)), the gradient norms, the penalty), or, at `train.sample_every`, the
fixed-noise batch the loop has just drawn for its picture (a toy also draws a few hundred points from its own seed,
never from training's stream). None touches a weight or training's random stream, so a run trains the same with
`train.health=off`. Each logs its statistic as `health/<name>`; when its rule holds it prints one line (what was
seen, since which step, the overrides most likely to help, valid for this run's options), once per run, and the
warning goes into status.json, where `gan report` shows it. The rules and how the thresholds were measured:
docs/runs.md "Health".
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
from collections import deque
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from gan_cli.data.toys import mode_centers
from gan_cli.rundir import record_warnings

log = logging.getLogger(__name__)

# --- the rules' thresholds (docs/runs.md "Health" gives each one's measured margins) ---------------------------------
D_MARGIN = 0.9  # BCE family: D(x) - D(G(z)) at or above this ...
G_GRAD_FALL = 0.1  # ... while grad_norm/G is at most this fraction of its largest value so far ...
D_WINS_LOGS = 3  # ... for this many logs in a row
CRITIC_GROWTH = 3.0  # other objectives: D(x) - D(G(z)) this many times its smallest value since the warm-up ...
CRITIC_RISES = 5  # ... after rising at this many logs in a row
DIVERSITY_FLOOR = 0.05  # mean pairwise distance of the fixed-noise batch over the same on as many real samples: below
DIVERSITY_DROP = 0.35  # this, or below this fraction of its own best so far (an untrained G's is low, and rises)
SPIKE = 25.0  # a gradient norm or the penalty this many times its median over the previous logs ...
SPIKE_HISTORY = 20  # ... (at most this many) ...
SPIKE_MIN_HISTORY = 5  # ... once at least this many are known
SWING = 0.25  # BCE family: mean |change| of D(x) - D(G(z)) between logs, over the last SWING_LOGS logs ...
SWING_LOGS = 8  # ... whose changes flip sign at least SWING_FLIPS times
SWING_FLIPS = 3
WARM_UP = 0.25  # share of train.steps during which collapse, oscillation and spikes are not judged
MODES_FROM = 0.75  # toys: from this share of train.steps on (the grid preset lands its modes after 60% of its run) ...
MODES_KEPT = 0.75  # ... fewer than this share of the modes covered ...
MODES_TICKS = 2  # ... at this many sample ticks in a row (a mode may blur for one)
MODE_POINTS = 50  # (points drawn per mode to count them)


@dataclasses.dataclass
class HealthWarning:
    """One fired detector: what status.json keeps and `gan report` shows."""

    name: str
    since: int  # the first step at which the rule held
    seen: str  # what was seen, in words with the numbers
    advice: list[str]  # overrides most likely to help, each valid for this run's options

    def line(self) -> str:
        tried = f"; try {' or '.join(self.advice)}" if self.advice else ""
        return f"health: {self.name} since step {self.since}: {self.seen}{tried}"


class Advice:
    """Overrides a run can take: only keys its chosen options read, and never the value it already has."""

    def __init__(self, cfg: Any, reads: dict[str, Any], is_image: bool) -> None:
        self.cfg, self.reads, self.is_image = cfg, reads, is_image

    def reads_key(self, dotted: str) -> bool:
        group, key = dotted.split(".", 1)
        return isinstance(self.reads.get(group), dict) and key in self.reads[group]

    def lr(self, which: str, factor: float) -> Optional[str]:
        """`optimizer.lr_d=...` (or lr_g, lr): the net's learning rate now, times `factor`."""
        opt = self.cfg.optimizer
        key = f"optimizer.{which}"
        if not self.reads_key(key):
            return None
        now = opt.get(which) if which != "lr" else opt.lr
        now = opt.lr if now is None else now
        return f"{key}={float(now) * factor:.2g}"

    def r1(self) -> Optional[str]:
        if str(self.cfg.loss.penalty) != "none" or not self.reads_key("loss.penalty"):
            return None
        weight = 5 if self.is_image else 0.05  # gamma/2: StyleGAN's 10 on images, the toy presets' 0.1
        extra = ""
        if self.reads_key("model.d_norm") and str(self.cfg.model.d_norm) == "batch":
            extra = " model.d_norm=spectral"  # R1 assumes D scores each sample on its own
        return f"loss.penalty=r1 loss.penalty_weight={weight}{extra}"

    def ns(self) -> Optional[str]:
        return "loss=ns" if str(self.cfg.loss.objective) == "minimax" else None

    def augment(self) -> Optional[str]:
        return "train.augment=[translation,cutout]" if self.is_image and not list(self.cfg.train.augment) else None

    def set(self, dotted: str, value: Any) -> Optional[str]:
        """`dotted=value` when the run reads the key and has another value."""
        group, key = dotted.split(".", 1)
        if not self.reads_key(dotted) or str(self.cfg[group].get(key)) == str(value):
            return None
        return f"{dotted}={value}"

    @staticmethod
    def first(*candidates: Optional[str], n: int = 2) -> list[str]:
        return [c for c in candidates if c][:n]


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """Mean L2 distance between every two samples (flattened): how spread out a batch is."""
    flat = x.detach().float().flatten(1).cpu()
    return float(torch.pdist(flat).mean()) if len(flat) > 1 else math.nan


class Health:
    """The detectors of one run (rank 0 only). `on_log` takes a log's window means, `on_samples` the fixed-noise batch;
    each returns the `health/*` scalars to write. `warnings`: the fired ones, earlier attempts' first."""

    def __init__(self, cfg: Any, reads: dict[str, Any], data: Any, probability: bool, run_dir: Path,
                 earlier: Optional[list[dict[str, Any]]] = None) -> None:  # fmt: skip
        self.cfg, self.steps, self.probability, self.run_dir = cfg, int(cfg.train.steps), probability, run_dir
        self.advice = Advice(cfg, reads, data.spec.is_image)
        self.warnings = [dict(w) for w in earlier or []]
        self.fired = {w.get("name") for w in self.warnings}
        self.d_wins_logs: list[int] = []  # the logs in a row at which D won
        self.g_grad_peak = 0.0
        self.history: dict[str, deque[float]] = {}
        self.margins: deque[tuple[int, float]] = deque(maxlen=SWING_LOGS + 1)  # (step, D(x) - D(G(z)))
        self.gaps: deque[tuple[int, float]] = deque(maxlen=CRITIC_RISES + 1)  # (step, critic gap) of the last logs
        self.gap_floor, self.gaps_judged = math.inf, 0  # its smallest |value| after the warm-up, and at how many logs
        self.low_diversity: Optional[int] = None
        self.best_diversity = 0.0
        self.best_modes = 0
        self.few_modes: list[int] = []  # the sample ticks in a row with too few modes covered
        self.data = data
        self.real: Optional[torch.Tensor] = None  # real samples, read at the first sample tick (image_folder: files)
        self.spreads: dict[tuple[int, ...], float] = {}  # the real samples' spread at each size G draws
        name = str(cfg.dataset.name)
        self.centers = mode_centers(name) if name in ("ring8", "grid25") and not cfg.dataset.get("_target_") else None
        self.mode_std = float(cfg.dataset.std) if cfg.dataset.get("std") is not None else 1.0

    # -- the rules ------------------------------------------------------------------------------
    def on_log(self, step: int, means: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        if "D(x)" in means and "D(G(z))" in means:
            margin = means["D(x)"] - means["D(G(z))"]
            if self.probability:
                out.update(self._d_wins(step, margin, means.get("grad_norm/G")))
                out.update(self._oscillation(step, margin))
            else:
                out.update(self._critic_gap(step, margin))
        for key, tag in (("grad_norm/D", "grad_d"), ("grad_norm/G", "grad_g"), ("loss/penalty", "penalty")):
            if key in means:
                out.update(self._spike(step, key, tag, means[key]))
        return out

    def _d_wins(self, step: int, margin: float, g_grad: Optional[float]) -> dict[str, float]:
        if g_grad is None:
            return {"health/d_margin": margin}
        self.g_grad_peak = max(self.g_grad_peak, g_grad)
        fall = g_grad / self.g_grad_peak if self.g_grad_peak > 0 else 1.0
        wins = margin >= D_MARGIN and fall <= G_GRAD_FALL
        self.d_wins_logs = [*self.d_wins_logs, step] if wins else []
        if len(self.d_wins_logs) >= D_WINS_LOGS:
            self._fire(
                "d_wins", self.d_wins_logs[0],
                f"D wins: D(x) - D(G(z)) = {margin:.3f} (>= {D_MARGIN}) and grad_norm/G at {fall:.1%} of its peak "
                f"(<= {G_GRAD_FALL:.0%}) for {len(self.d_wins_logs)} logs: G's gradient vanishes",
                Advice.first(self.advice.lr("lr_d", 0.25), self.advice.ns(), self.advice.r1(), self.advice.augment()),
            )  # fmt: skip
        return {"health/d_margin": margin, "health/g_grad_fall": fall}

    def _critic_gap(self, step: int, gap: float) -> dict[str, float]:
        """A critic's gap has no fixed scale: judged against its own smallest value after the warm-up."""
        self.gaps.append((step, gap))
        if step > WARM_UP * self.steps:
            self.gap_floor, self.gaps_judged = min(self.gap_floor, abs(gap)), self.gaps_judged + 1
        growth = abs(gap) / self.gap_floor if 0 < self.gap_floor < math.inf else 1.0
        recent = [g for _, g in self.gaps]
        rising = len(recent) == CRITIC_RISES + 1 and all(b > a for a, b in zip(recent, recent[1:]))
        if rising and growth >= CRITIC_GROWTH and self.gaps_judged > CRITIC_RISES:
            self._fire(
                "d_wins", self.gaps[0][0],
                f"the critic's gap D(x) - D(G(z)) = {gap:.4g} rose at {CRITIC_RISES} logs in a row to {growth:.1f}x its "
                f"smallest since step {int(WARM_UP * self.steps)} (>= {CRITIC_GROWTH}x): D is pulling away from G",
                Advice.first(self.advice.lr("lr_d", 0.25), self.advice.set("loss.n_critic", 1), self.advice.augment()),
            )  # fmt: skip
        return {"health/critic_growth": growth}

    def _oscillation(self, step: int, margin: float) -> dict[str, float]:
        self.margins.append((step, margin))
        if len(self.margins) <= SWING_LOGS:
            return {}
        values = [m for _, m in self.margins]
        moves = [b - a for a, b in zip(values, values[1:])]
        swing = sum(abs(m) for m in moves) / len(moves)
        flips = sum(1 for a, b in zip(moves, moves[1:]) if a * b < 0)
        if swing >= SWING and flips >= SWING_FLIPS and step > WARM_UP * self.steps:
            self._fire(
                "oscillation", self.margins[0][0],
                f"D(x) - D(G(z)) swings by {swing:.2f} between logs (>= {SWING}), changing direction {flips} times in "
                f"{SWING_LOGS} logs: D and G circle instead of converging",
                Advice.first(self.advice.r1(), self.advice.lr("lr", 0.5)),
            )  # fmt: skip
        return {"health/swing": swing}

    def _spike(self, step: int, key: str, tag: str, value: float) -> dict[str, float]:
        """After the warm-up only: a G waking from a small initialisation grows its gradient a thousandfold and more
        early on (a tiny MLP's, from 5e-6), and that is no explosion."""
        if step <= WARM_UP * self.steps:
            return {}
        past = self.history.setdefault(key, deque(maxlen=SPIKE_HISTORY))
        ratio = 1.0
        if len(past) >= SPIKE_MIN_HISTORY:
            median = statistics.median(past)
            ratio = value / median if median > 0 else 1.0
        past.append(value)
        if ratio >= SPIKE:
            penalty = key == "loss/penalty"
            self._fire(
                "penalty_explodes" if penalty else "gradient_explodes", step,
                f"{key} = {value:.4g}, {ratio:.0f}x its median over the previous {len(past) - 1} logs (>= {SPIKE:g}x)",
                Advice.first(
                    self.advice.lr("lr", 0.25),
                    self.advice.set("model.d_norm", "spectral") if not penalty else None,
                    self.advice.set("loss.penalty_every", 1) if penalty else None,
                ),
            )  # fmt: skip
        return {f"health/{tag}_spike": ratio}

    def on_samples(self, step: int, fake: torch.Tensor, draw: Callable[[int], torch.Tensor]) -> dict[str, float]:
        """`fake`: the fixed-noise batch just drawn; `draw(n)`: n more samples from G's own seed (toys only)."""
        out: dict[str, float] = {}
        shape = tuple(fake.shape[1:])
        if self.real is None:
            self.real = real_reference(self.data, int(self.cfg.train.n_samples), int(self.cfg.seed))
        if shape not in self.spreads:  # once per size (model=progan grows); nan: real data of another shape
            real = same_size(fake, self.real)
            self.spreads[shape] = mean_pairwise_distance(real) if tuple(real.shape[1:]) == shape else math.nan
        spread = self.spreads[shape]
        if math.isfinite(spread) and spread > 0:
            out.update(self.diversity(step, mean_pairwise_distance(fake) / spread))
        if self.centers is not None:
            from gan_cli.metrics.toy import mode_coverage

            points = draw(MODE_POINTS * len(self.centers))
            out.update(self.modes(step, mode_coverage(points, self.centers, self.mode_std).modes_covered, len(points)))
        return out

    def diversity(self, step: int, ratio: float) -> dict[str, float]:
        """The mode-collapse rule on the fixed-noise batch's spread over real data's (`on_samples` measures it)."""
        self.best_diversity = max(self.best_diversity, ratio)
        judged = step > WARM_UP * self.steps
        low = judged and (ratio < DIVERSITY_FLOOR or ratio < DIVERSITY_DROP * self.best_diversity)
        self.low_diversity = (self.low_diversity or step) if low else None
        if low:
            self._fire(
                "mode_collapse", self.low_diversity,
                f"the fixed-noise batch is {ratio:.0%} as spread out as real data (mean pairwise distance), "
                f"{ratio / self.best_diversity if self.best_diversity else 0:.0%} of its best so far (< "
                f"{DIVERSITY_FLOOR:.0%}, or < {DIVERSITY_DROP:.0%} of the best): G draws few distinct samples",
                Advice.first(self.advice.set("model.minibatch", "mbstd"), self.advice.ns(), self.advice.r1(),
                             self.advice.set("model.pack", 2) if not self._has_codes() else None),
            )  # fmt: skip
        return {"health/diversity": ratio}

    def modes(self, step: int, covered: int, drawn: int) -> dict[str, float]:
        """The lost-modes rule on a toy's modes covered by `drawn` points of G (`on_samples` counts them)."""
        k = len(self.centers) if self.centers is not None else 0
        judged = step > MODES_FROM * self.steps
        self.best_modes = max(self.best_modes, covered)
        self.few_modes = [*self.few_modes, step] if judged and covered < MODES_KEPT * k else []
        if len(self.few_modes) >= MODES_TICKS:
            lost = f", {self.best_modes} at best so far" if self.best_modes > covered else ""
            name = str(self.cfg.dataset.name)
            self._fire(
                "modes_lost", self.few_modes[0],
                f"G covers {covered} of the {k} modes at {len(self.few_modes)} sample ticks in a row (< "
                f"{MODES_KEPT:.0%}{lost}; a mode is covered by a point within 3 std of it, of {drawn} drawn)",
                Advice.first("" if self._has_codes() else f"experiment={name}", self.advice.r1(),
                             self.advice.set("model.info_cat", k)),
            )  # fmt: skip
        return {"health/modes": float(covered)}

    # -- bookkeeping ---------------------------------------------------------------------------
    def _has_codes(self) -> bool:
        return int(self.cfg.model.get("info_cat") or 0) > 0

    def _fire(self, name: str, since: int, seen: str, advice: list[str]) -> None:
        if name in self.fired:
            return
        self.fired.add(name)
        warning = HealthWarning(name, int(since), seen, advice)
        self.warnings.append(dataclasses.asdict(warning))
        log.warning(warning.line())
        record_warnings(self.run_dir, self.warnings)  # said while the run goes on; its end writes them again


def real_reference(data: Any, n: int, seed: int) -> torch.Tensor:
    """n real samples picked with their own generator (training's stream is left alone): the spread G's fixed-noise
    batch is compared with."""
    size = len(data)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(size, generator=gen)[: min(n, size)]
    if data.x is not None:
        return data.x[idx].float().cpu()
    return torch.stack([data.stream[int(i)][0] for i in idx]).float()


def same_size(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Real images at the side G draws now (model=progan grows): distances compare like with like."""
    if real.dim() == 4 and fake.dim() == 4 and real.shape[-2:] != fake.shape[-2:]:
        return F.interpolate(real, size=fake.shape[-2:], mode="area")
    return real
