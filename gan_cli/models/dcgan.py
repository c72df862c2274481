"""DCGAN (Radford et al. 2016), sized from the data: any square image whose side is base * 2^k (base >= 4).

G: a transposed conv from z (a 1x1 map) to base x base, then k stride-2 transposed convs, each
halving the channels; BatchNorm + ReLU inside, tanh out. D mirrors it with stride-2 convs and
LeakyReLU(0.2), no pooling and no fully connected hidden layer; its last conv covers the whole
base x base map and gives one logit.
"""

from __future__ import annotations

import torch
from torch import nn

from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError


def dcgan_layout(spec: DataSpec) -> tuple[int, int]:
    """(base, k) with side = base * 2^k, k as large as keeps base >= 4: 28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4)."""
    if not spec.is_image:
        raise GanError(
            f"model=dcgan needs images, but dataset={spec.name} holds vectors of shape {list(spec.shape)}. "
            f"Use model=mlp for toy data (ring8, grid25, gauss1d), or an image dataset (mnist5k, mnist, fashion_mnist, cifar10, image_folder)."
        )
    _, h, w = spec.shape
    k = 0
    while h % (2 ** (k + 1)) == 0 and h // 2 ** (k + 1) >= 4:
        k += 1
    if h != w or k == 0:
        raise GanError(
            f"model=dcgan needs square images whose side is a base of at least 4 times a power of two (28, 32, 48, 64, 128, ...); "
            f"dataset={spec.name} has {h}x{w}. Set dataset.image_size to such a size."
        )
    return h // 2**k, k


def _d_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # layer norm over (C, H, W), per-channel affine: per-sample, so fine with gradient penalties
    return nn.Identity()


class DCGANGenerator(nn.Module):
    def __init__(self, spec: DataSpec, z_dim: int, width: int) -> None:
        super().__init__()
        base, k = dcgan_layout(spec)
        self.z_dim = z_dim
        ch = width * 2 ** (k - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, ch, base, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
        for _ in range(k - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, spec.shape[0], 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z.view(len(z), -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    def __init__(self, spec: DataSpec, width: int, norm: str) -> None:
        super().__init__()
        base, k = dcgan_layout(spec)
        ch = width
        layers: list[nn.Module] = [nn.Conv2d(spec.shape[0], ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for _ in range(k - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), _d_norm(norm, ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, base, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x).flatten()  # logits: no sigmoid inside the model
