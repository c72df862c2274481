"""`eval.every`: scores during training, logged under metrics/<name>, appended to metrics.jsonl,
with checkpoints/best.pt kept by one chosen score.

The loop in train.py calls `due` and `run` and nothing else; everything about which metric,
which direction is better and what was best so far lives here (and in the checkpoint, so a
resumed run keeps its best score).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from gan_cli.errors import GanError
from gan_cli.files import append_atomic, json_text
from gan_cli.metrics.scorer import Scorer, generated_labels, is_better
from gan_cli.runtime import generate


class TrainingEval:
    """`classes`: the classes a class-conditional G takes (0: not conditional); its samples are then generated
    with labels 0, 1, ..., k-1, 0, ... and the default scores include `cond` (does G draw the class it is asked for)."""

    def __init__(
        self,
        cfg,
        dataset_cfg,
        data,
        run_dir: Path,
        device: torch.device,
        d_is_probability: bool,
        saved: Optional[dict] = None,
        classes: int = 0,
    ) -> None:
        self.every = int(cfg.every)
        self.run_dir = run_dir
        self.seed = int(cfg.seed)
        self.scorer: Optional[Scorer] = None
        self.labels: Optional[torch.Tensor] = None
        self.best_name: Optional[str] = None
        self.best_value: Optional[float] = None
        self.latest: dict[str, float] = {}
        if self.every < 0:
            raise GanError(f"eval.every={self.every} must be >= 0 (0 turns evaluation during training off).")
        if self.every == 0:
            return
        self.scorer = Scorer(
            data,
            dataset_cfg,
            cfg.metrics,
            cfg.n,
            cfg.backbone,
            device,
            self.seed,
            cfg.inception_weights,
            has_d=d_is_probability,
            conditional=classes > 0,
        )
        self.labels = generated_labels(classes, self.scorer.n)
        directions = self.scorer.directions()
        self.best_name = cfg.best or next(iter(directions))
        if self.best_name not in directions:
            raise GanError(
                f"eval.best={self.best_name!r} is not among the scores this run computes. Allowed: {', '.join(directions)}."
            )
        self.direction = directions[self.best_name]
        if saved and saved.get("best_name") == self.best_name:  # a resumed run keeps its best (of the same score only)
            self.best_value = saved.get("best_value")
        # the training clock of metrics.jsonl's "train_seconds": from here (set-up and scorer built) on, less the scoring
        self._clock_start = time.perf_counter()
        self._eval_seconds = 0.0

    @property
    def enabled(self) -> bool:
        return self.scorer is not None

    def due(self, step: int, is_last: bool) -> bool:
        return self.enabled and self.is_due(self.every, step, is_last)

    @staticmethod
    def is_due(every: int, step: int, is_last: bool) -> bool:
        """Whether `eval.every` asks for scores at this step: known to every rank, even those that do not score."""
        return every > 0 and (step % every == 0 or is_last)

    def run(self, step: int, G: nn.Module, D: nn.Module, tracker) -> bool:
        """Score G now; log and append the scores. True when this is the best score so far."""
        assert self.scorer is not None
        t0 = time.perf_counter()
        train_seconds = t0 - self._clock_start - self._eval_seconds  # wall time of this process's training so far
        was_training, d_was_training = G.training, D.training
        G.eval()
        D.eval()
        try:
            fake = generate(G, self.scorer.n, self.seed, next(G.parameters()).device, labels=self.labels)
            scores = self.scorer.score(fake, lambda x: torch.sigmoid(D(x)), self.labels)
            if "dstar" in self.scorer.metrics:
                self._plot_dstar(fake, D, step, tracker)
        finally:
            G.train(was_training)
            D.train(d_was_training)
        for name, value in scores.items():
            tracker.writer.add_scalar(f"metrics/{name}", value, step)
        self.latest = scores
        tracker.latest.update({f"metrics/{k}": v for k, v in scores.items()})
        record = {
            "step": step,
            **scores,
            "seconds": round(time.perf_counter() - t0, 3),
            "train_seconds": round(train_seconds, 3),
        }
        # a new file renamed over the old one: a symlink planted at the name is replaced, never followed
        append_atomic(self.run_dir / "metrics.jsonl", json_text(record) + "\n")
        value = scores[self.best_name]
        better = is_better(value, self.best_value, self.direction)
        if better:
            self.best_value = value
        tracker.console.print(
            "  ".join(f"{k} {v:.4g}" for k, v in scores.items()) + (f"  (best {self.best_name})" if better else ""),
            highlight=False,
        )
        self._eval_seconds += time.perf_counter() - t0
        return better

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps so a resumed run compares against the same best."""
        return {"best_name": self.best_name, "best_value": self.best_value}

    def final(self) -> Optional[float]:
        """The last value of the chosen score: what `gan train` returns to a Hydra sweeper."""
        return self.latest.get(self.best_name) if self.best_name else None

    def _plot_dstar(self, fake: torch.Tensor, D: nn.Module, step: int, tracker) -> None:
        from gan_cli.plots import dstar_figure, save_figure

        assert self.scorer is not None
        xs = torch.linspace(float(fake.min()) - 2, max(float(fake.max()), 7.0) + 2, 200)
        d, d_star = self.scorer.dstar_curve(fake, lambda x: torch.sigmoid(D(x)), xs)
        fig = dstar_figure(xs, d, d_star, title=f"gauss1d, step {step}: learned D against the optimal D*")
        tracker.figure("theory/D_vs_Dstar", fig, step)
        save_figure(fig, self.run_dir / "figures" / f"dstar_step_{step:06d}.png")
