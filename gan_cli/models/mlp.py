"""The fully connected GAN of the original article, for images (flattened) and for toy vectors."""

from __future__ import annotations

import math

import torch
from torch import nn

from gan_cli.data.spec import DataSpec


class MLPGenerator(nn.Module):
    def __init__(self, spec: DataSpec, z_dim: int, width: int) -> None:
        super().__init__()
        self.z_dim, self.shape = z_dim, spec.shape
        out = math.prod(spec.shape)
        self.net = nn.Sequential(
            nn.Linear(z_dim, width), nn.LeakyReLU(0.2),
            nn.Linear(width, 2 * width), nn.LeakyReLU(0.2),
            nn.Linear(2 * width, 4 * width), nn.LeakyReLU(0.2),
            nn.Linear(4 * width, out),
            nn.Tanh() if spec.is_image else nn.Identity(),  # images live in [-1, 1]; toy points anywhere in R^d
        )  # fmt: skip

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z).view(len(z), *self.shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, spec: DataSpec, width: int, dropout: float, norm: str) -> None:
        super().__init__()
        dims = [math.prod(spec.shape), 4 * width, 2 * width, width]
        layers: list[nn.Module] = [nn.Flatten()]
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(d_in, d_out)]
            layers += [nn.LayerNorm(d_out)] if norm == "layer" else []
            layers += [nn.LeakyReLU(0.2), nn.Dropout(dropout)]
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).squeeze(1)  # logits: no sigmoid inside the model
