"""Synthetic low-dimensional datasets where the true distribution is known exactly.

They make mode collapse countable (ring8, grid25) and the theory checkable (gauss1d, the 1-D
example N(7, 1) of the lectures).
"""

from __future__ import annotations

import math

import torch

TOY_NAMES = ("ring8", "grid25", "gauss1d")
GAUSS1D_MEAN = 7.0


def mode_centers(name: str) -> torch.Tensor:
    """The means of the mixture components (K x d)."""
    if name == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return torch.stack([2.0 * torch.cos(angles), 2.0 * torch.sin(angles)], dim=1).float()
    if name == "grid25":
        ticks = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(ticks, ticks)
    if name == "gauss1d":
        return torch.tensor([[GAUSS1D_MEAN]])
    raise ValueError(name)


def make_toy(name: str, n: int, std: float, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n points of the named mixture (and their mode index as label, for the mixtures)."""
    gen = torch.Generator().manual_seed(seed)
    centers = mode_centers(name)
    k = torch.randint(len(centers), (n,), generator=gen)
    x = centers[k] + std * torch.randn(n, centers.shape[1], generator=gen)
    labels = None if name == "gauss1d" else k
    return x, labels
