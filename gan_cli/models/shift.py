"""The 1-D example: G(z) = z + theta and a logistic discriminator D(x) = sigmoid(a x + b).

For data N(mu, 1) and G's samples N(theta, 1), log p_data/p_g is linear in x, so the optimal
D* = p_data / (p_data + p_g) is exactly a logistic function: this D can reach D*, which makes
the theory testable (D -> D* for fixed G, theta -> mu under training).
"""

from __future__ import annotations

import torch
from torch import nn

from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError


def _check(spec: DataSpec) -> None:
    if spec.shape != (1,):
        raise GanError(
            f"model=shift is the 1-D example and needs 1-D data (dataset=gauss1d); dataset={spec.name} has shape {list(spec.shape)}."
        )


class ShiftGenerator(nn.Module):
    def __init__(self, spec: DataSpec, init: float = 0.0) -> None:
        super().__init__()
        _check(spec)
        self.z_dim = 1
        self.theta = nn.Parameter(torch.tensor(float(init)))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return z.view(z.shape[0], 1) + self.theta


class LogisticDiscriminator(nn.Module):
    def __init__(self, spec: DataSpec) -> None:
        super().__init__()
        _check(spec)
        self.linear = nn.Linear(1, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(x.view(len(x), 1)).squeeze(1)
