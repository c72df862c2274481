"""DCGAN (Radford et al. 2016), sized from the data: any square image whose side is base * 2^k (base >= 4).

G: a transposed conv from z (a 1x1 map) to base x base, then k stride-2 transposed convs, each
halving the channels; BatchNorm + ReLU inside, tanh out. D mirrors it with stride-2 convs and
LeakyReLU(0.2), no pooling and no fully connected hidden layer; the shared head's linear layer
(gan_cli.models.layers) plays DCGAN's last conv, covering the whole base x base map with one logit.
Both take the variant options: label conditioning, self-attention at one resolution, virtual batch
norm in G.
"""

from __future__ import annotations

import torch
from torch import nn

from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError
from gan_cli.models.layers import (
    CBN_EMBED,
    ConditionalBatchNorm2d,
    ConditionalSequential,
    Discriminator,
    HeadOptions,
    LabelToInput,
    LatentInput,
    SelfAttention,
    VirtualBatchNorm2d,
)


def dcgan_layout(spec: DataSpec, model: str = "dcgan") -> tuple[int, int]:
    """(base, k) with side = base * 2^k, k as large as keeps base >= 4: 28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4)."""
    if not spec.is_image:
        raise GanError(
            f"model={model} needs images, but dataset={spec.name} holds vectors of shape {list(spec.shape)}. "
            f"Use model=mlp for toy data (ring8, grid25, gauss1d), or an image dataset (mnist5k, mnist, fashion_mnist, cifar10, image_folder)."
        )
    _, h, w = spec.shape
    k = 0
    while h % (2 ** (k + 1)) == 0 and h // 2 ** (k + 1) >= 4:
        k += 1
    if h != w or k == 0:
        raise GanError(
            f"model={model} needs square images whose side is a base of at least 4 times a power of two (28, 32, 48, 64, 128, ...); "
            f"dataset={spec.name} has {h}x{w}. Set dataset.image_size to such a size."
        )
    return h // 2**k, k


def _d_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(
            1, channels
        )  # layer norm over (C, H, W), per-channel affine: per-sample, so fine with gradient penalties
    return nn.Identity()  # none, or spectral (applied to the weights by build_models)


def _attention(resolution: int, at: int, channels: int) -> list[nn.Module]:
    return [SelfAttention(channels)] if resolution == at else []


VBN_REFERENCE = 32  # size of virtual batch norm's fixed reference batch


class DCGANGenerator(nn.Module):
    """`cbn_classes` > 0: BigGAN's class-conditional batch norm in every norm layer (model.cond=cbn), from one
    class embedding table shared by all of them, instead of the label appended to z."""

    def __init__(
        self,
        spec: DataSpec,
        latent: LatentInput,
        width: int,
        attention: int = 0,
        norm: str = "batch",
        cbn_classes: int = 0,
    ) -> None:
        super().__init__()
        base, k = dcgan_layout(spec)
        self.input = latent
        self.z_dim = latent.layout.size
        self.virtual = norm == "virtual"
        if self.virtual:  # a buffer, so the reference batch travels with the weights into every checkpoint
            self.register_buffer(
                "reference_z", latent.layout.sample(VBN_REFERENCE, "cpu", torch.Generator().manual_seed(12345))
            )
        self.class_embed = nn.Embedding(cbn_classes, CBN_EMBED) if cbn_classes else None

        def g_norm(channels: int) -> nn.Module:
            if self.class_embed is not None:
                return ConditionalBatchNorm2d(channels)
            return VirtualBatchNorm2d(channels, VBN_REFERENCE) if self.virtual else nn.BatchNorm2d(channels)

        ch, res = width * 2 ** (k - 1), base
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent.size, ch, base, 1, 0, bias=False),
            g_norm(ch),
            nn.ReLU(True),
        ]
        layers += _attention(res, attention, ch)
        for _ in range(k - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), g_norm(ch // 2), nn.ReLU(True)]
            ch, res = ch // 2, res * 2
            layers += _attention(res, attention, ch)
        layers += [nn.ConvTranspose2d(ch, spec.shape[0], 4, 2, 1, bias=False), nn.Tanh()]
        self.net = ConditionalSequential(*layers) if self.class_embed is not None else nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_embed is not None:
            if y is None:  # as LabelToLatent does: fixed-noise grids cycle through the classes
                y = torch.arange(z.shape[0], device=z.device) % self.class_embed.num_embeddings
            return self.net(self.input(z, None).view(z.shape[0], -1, 1, 1), self.class_embed(y))
        if not self.virtual:
            return self.net(self.input(z, y).view(z.shape[0], -1, 1, 1))
        v = torch.cat(
            [self.input(self.reference_z.to(z.dtype), None), self.input(z, y)]
        )  # reference labels cycle through the classes
        return self.net(v.view(v.shape[0], -1, 1, 1))[VBN_REFERENCE:]


def dcgan_discriminator(spec: DataSpec, width: int, norm: str, opts: HeadOptions, attention: int = 0) -> Discriminator:
    """Strided convs down to base x base; the head's linear layer is DCGAN's last (base x base) conv."""
    base, k = dcgan_layout(spec)
    label_input = LabelToInput(opts.num_classes, spec.shape) if opts.cond == "concat" else None
    ch, res = width, spec.shape[1] // 2
    in_ch = spec.shape[0] + (label_input.extra if label_input else 0)
    layers: list[nn.Module] = [nn.Conv2d(in_ch, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    layers += _attention(res, attention, ch)
    for _ in range(k - 1):
        layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), _d_norm(norm, ch * 2), nn.LeakyReLU(0.2, True)]
        ch, res = ch * 2, res // 2
        layers += _attention(res, attention, ch)
    return Discriminator(nn.Sequential(*layers), ch * base * base, opts, label_input)


def resolutions(spec: DataSpec) -> list[int]:
    """The feature-map sides where a self-attention block can sit (in G and in D)."""
    base, k = dcgan_layout(spec)
    return [base * 2**i for i in range(k)]
