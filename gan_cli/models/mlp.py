"""The fully connected GAN of the original article, for images (flattened) and for toy vectors."""

from __future__ import annotations

import math

import torch
from torch import nn

from gan_cli.config import GActivation, values_of
from gan_cli.data.spec import DataSpec
from gan_cli.models.dropout import Dropout
from gan_cli.models.layers import Discriminator, HeadOptions, LabelToInput, LatentInput

G_ACTIVATIONS = values_of(GActivation)


class MLPGenerator(nn.Module):
    """z -> w -> 2w -> 4w -> data. `activation` relu (the original article's G) lets whole regions of z map to
    one point, since switched-off units pass nothing: that is what sharp, separated modes need; LeakyReLU always
    passes some of z's variation through, which leaves a haze around every mode."""

    def __init__(self, spec: DataSpec, latent: LatentInput, width: int, activation: str = "leaky") -> None:
        super().__init__()
        self.input = latent
        self.z_dim, self.shape = latent.layout.size, spec.shape
        out = math.prod(spec.shape)

        def act() -> nn.Module:
            return nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.2)

        self.net = nn.Sequential(
            nn.Linear(latent.size, width),
            act(),
            nn.Linear(width, 2 * width),
            act(),
            nn.Linear(2 * width, 4 * width),
            act(),
            nn.Linear(4 * width, out),
            nn.Tanh() if spec.is_image else nn.Identity(),  # images live in [-1, 1]; toy points anywhere in R^d
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.input(z, y)).view(z.shape[0], *self.shape)


def mlp_discriminator(spec: DataSpec, width: int, dropout: float, norm: str, opts: HeadOptions) -> Discriminator:
    """x (flattened, with the label embedding when concat-conditioned) -> 4w -> 2w -> w -> head."""
    # the one-hot label joins the flattened x (Mirza & Osindero), not as image-sized maps
    label_input = LabelToInput(opts.num_classes, (math.prod(spec.shape),)) if opts.cond == "concat" else None
    dims = [math.prod(spec.shape) + (label_input.size if label_input else 0), 4 * width, 2 * width, width]
    layers: list[nn.Module] = [nn.Flatten()]
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(d_in, d_out)]
        layers += [nn.LayerNorm(d_out)] if norm == "layer" else [nn.BatchNorm1d(d_out)] if norm == "batch" else []
        layers += [nn.LeakyReLU(0.2), Dropout(dropout)]
    return Discriminator(nn.Sequential(*layers), width, opts, label_input)
