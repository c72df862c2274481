"""An exponential moving average of G's weights, with a warm-up and its own BatchNorm statistics.

Averaging G's weights over the last few hundred steps smooths out the oscillation of the
adversarial game; StyleGAN, BigGAN and most modern GANs sample from such an average. Two
details decide whether it helps or hurts:

- warm-up: with a constant decay of 0.999 the average still holds a third of the random
  initial weights after 1,000 steps. The decay therefore ramps up as min(decay, (1 + t) / (10 + t))
  (the `num_updates` rule of TensorFlow's ExponentialMovingAverage), so early weights fade fast.
- BatchNorm statistics: the running means and variances G collected belong to G's weights,
  not to the averaged ones, and a BatchNorm generator sampled in eval mode with the wrong
  statistics draws washed-out, malformed images. `recompute_norm_stats` measures them anew on
  the averaged weights (BigGAN's "standing statistics") before every sample, score and checkpoint.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from gan_cli.errors import GanError
from gan_cli.rng import seeded_global_rng

NORM_STAT_BATCHES = 8  # batches of fresh z whose statistics the EMA generator's BatchNorm layers average
NORM_STAT_BATCH = 256


def ema_decay(decay: float, updates: int, warmup: bool = True) -> float:
    """The decay used at the `updates`-th update (1-based): min(decay, (1 + t) / (10 + t)) with warm-up."""
    return min(decay, (1.0 + updates) / (10.0 + updates)) if warmup else decay


class EMA:
    """The averaged generator. Not torch.optim.swa_utils.AveragedModel: its update reads a counter back to
    the host every step, and the training step must not wait for the GPU. This one is a single fused lerp,
    with the step count kept on the host."""

    def __init__(self, G: nn.Module, decay: float, warmup: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise GanError(f"model.ema={decay} must be in (0, 1), e.g. 0.999, or 0 to turn the EMA generator off.")
        self.decay, self.warmup = decay, warmup
        self.updates = 0
        self.module = copy.deepcopy(G).eval().requires_grad_(False)
        self._stats_fresh = False
        self._pairs: Optional[tuple[nn.Module, list[torch.Tensor], list[torch.Tensor]]] = None
        # spectral norms (model.g_spectral): the module stays in eval mode, where they run no power iteration
        self._parametrized = [(m, name) for m in self.module.modules() for name in getattr(m, "parametrizations", {})]

    @torch.no_grad()
    def update(self, G: nn.Module) -> None:
        self.updates += 1
        weight = 1.0 - ema_decay(self.decay, self.updates, self.warmup)
        if (
            self._pairs is None or self._pairs[0] is not G
        ):  # the parameter lists, built once (walking the modules costs each step)
            self._pairs = (G, list(self.module.parameters()), list(G.parameters()))
        torch._foreach_lerp_(self._pairs[1], self._pairs[2], weight)
        self._power_iterate()
        self._stats_fresh = False

    def _power_iterate(self) -> None:
        """One power iteration of every spectral norm on the averaged weights, as G's training forward does on its
        own; without it the EMA generator would divide its weights by the singular values of the initial ones."""
        for m, name in self._parametrized:
            m.parametrizations[name].train()
            getattr(m, name)  # computing the weight runs the iteration, updating the stored u and v
            m.parametrizations[name].eval()

    @torch.no_grad()
    def recompute_norm_stats(self, draw_z: Callable[[int, torch.Generator], torch.Tensor], seed: int = 0) -> None:
        """Running statistics of every BatchNorm layer measured on the averaged weights: a cumulative mean over
        NORM_STAT_BATCHES batches of z from `draw_z(n, generator)`, with training's random streams left as they were."""
        norms = [m for m in self.module.modules() if isinstance(m, _BatchNorm)]
        if not norms or self._stats_fresh:
            return
        device = next(self.module.parameters()).device
        gen = torch.Generator(device="cpu").manual_seed(seed)
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        self.module.train()
        with seeded_global_rng(seed, device):  # model=style draws per-layer noise
            for _ in range(NORM_STAT_BATCHES):
                self.module(draw_z(NORM_STAT_BATCH, gen).to(device))
        self.module.eval()
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self._stats_fresh = True

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state.get("updates", 0))
