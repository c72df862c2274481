"""A small style-based generator (Karras et al. 2019, StyleGAN), sized like DCGAN from the data.

z -> mapping MLP -> w; synthesis starts from a learned constant, and every layer is
conv -> per-pixel noise -> LeakyReLU -> AdaIN(w). The style enters only through AdaIN's
per-channel scale and shift, and the noise adds stochastic detail, which is what separates
this generator from DCGAN's z-at-the-input design. Left out for size: progressive growing,
equalised learning rate, style mixing and the truncation trick.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli.data.spec import DataSpec
from gan_cli.models.dcgan import dcgan_layout
from gan_cli.models.layers import AdaIN, LatentInput, SelfAttention

MAPPING_LAYERS = 4  # StyleGAN has 8; 4 is plenty for 28-32 px images


class NoiseInput(nn.Module):
    """Per-pixel Gaussian noise, scaled per channel by a learned strength that starts at 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(len(x), 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return x + self.strength * noise


class StyleLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, w_dim: int, upsample: bool, attention: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.noise = NoiseInput(out_ch)
        self.adain = AdaIN(out_ch, w_dim)
        self.attention = SelfAttention(out_ch) if attention else nn.Identity()

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.adain(F.leaky_relu(self.noise(self.conv(x)), 0.2), w)
        return self.attention(x)


class StyleGenerator(nn.Module):
    def __init__(self, spec: DataSpec, latent: LatentInput, width: int, attention: int = 0) -> None:
        super().__init__()
        base, k = dcgan_layout(spec, "style")
        self.input = latent
        self.z_dim = latent.layout.size
        w_dim = max(latent.size, 4 * width)
        mapping: list[nn.Module] = []
        for i in range(MAPPING_LAYERS):
            mapping += [nn.Linear(latent.size if i == 0 else w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*mapping)
        ch = width * 2 ** (k - 1)
        self.const = nn.Parameter(torch.randn(1, ch, base, base))
        layers = [StyleLayer(ch, ch, w_dim, upsample=False, attention=attention == base)]
        res = base
        for _ in range(k):
            out = max(ch // 2, width // 2, 1)
            res *= 2
            layers += [StyleLayer(ch, out, w_dim, upsample=True, attention=False),
                       StyleLayer(out, out, w_dim, upsample=False, attention=attention == res)]  # fmt: skip
            ch = out
        self.layers = nn.ModuleList(layers)
        self.to_image = nn.Conv2d(ch, spec.shape[0], 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        v = self.input(z, y)
        v = v * torch.rsqrt(v.square().mean(1, keepdim=True) + 1e-8)  # pixel norm of the input, as StyleGAN
        w = self.mapping(v)
        x = self.const.expand(len(z), -1, -1, -1)
        for layer in self.layers:
            x = layer(x, w)
        return torch.tanh(self.to_image(x))
