"""A small style-based generator (Karras et al. 2019, StyleGAN), sized like DCGAN from the data.

z -> mapping MLP -> w; synthesis starts from a learned constant, and every layer is
conv -> per-pixel noise -> LeakyReLU -> AdaIN(w). The style enters only through AdaIN's
per-channel scale and shift, and the noise adds stochastic detail, which is what separates
this generator from DCGAN's z-at-the-input design. Style mixing (`model.style_mixing=p`): in training,
with probability p a sample takes its styles from a second z after a random crossover layer, so no layer
can rely on its neighbours' styles coming from the same z; `gan sample mode=mix` shows the result.
The mapping network and AdaIN's style layers use StyleGAN's equalised learning rate (weights N(0, 1) scaled at run
time by He's constant; the mapping at lr multiplier 0.01), so w = mapping(z) spreads over z as much as z does and
each style moves its channel's scale and shift by about 1 across z. With PyTorch's default init the mapping shrank
z's spread 36 times and AdaIN's N(0, 0.02) weights took that to a 0.005 change of scale: at init G's samples were
1.4% as far apart as real digits, D's gradient moved them all the same way, and the run collapsed to one image
(docs/variants.md). Left out for size: progressive growing and equalised learning rate in the convolutions (the
truncation trick is `gan sample truncation=...`, for every model).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli.data.spec import DataSpec
from gan_cli.models.dcgan import dcgan_layout
from gan_cli.models.layers import AdaIN, LatentInput, SelfAttention

MAPPING_LAYERS = 4  # StyleGAN has 8; 4 is plenty for 28-32 px images
MAPPING_LR_MUL = 0.01  # StyleGAN's: the mapping network learns 100 times slower than the synthesis layers


class EqualLinear(nn.Module):
    """StyleGAN's equalised-learning-rate dense layer: weights stored N(0, 1 / lr_mul), scaled in the forward pass
    by lr_mul * gain / sqrt(fan_in) (He's init, applied at run time), biases stored 0 and scaled by lr_mul.

    With gain sqrt(2) and LeakyReLU(0.2) after it, each layer keeps its input's size, so w = mapping(z) is as
    spread over z as z itself (per-feature spread over z 0.72; PyTorch's default init left 0.02). An optimiser step
    moves the effective weights by about lr * lr_mul of their size, whatever the fan-in: at lr_mul 0.01 w's spread
    over z stays at 1.26 times its mean through 1,000 steps on mnist5k, where the old mapping's fell from 0.66 to
    0.13 in 300 (it learned to emit one w for every z)."""

    keeps_own_init = True  # model.init_std would undo the scaling

    def __init__(self, in_features: int, out_features: int, gain: float = math.sqrt(2), lr_mul: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_scale = lr_mul * gain / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.weight_scale, self.bias * self.lr_mul)


def _pixel_norm(v: torch.Tensor) -> torch.Tensor:
    return v * torch.rsqrt(v.square().mean(1, keepdim=True) + 1e-8)


class NoiseInput(nn.Module):
    """Per-pixel Gaussian noise, scaled per channel by a learned strength that starts at 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
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
    def __init__(
        self, spec: DataSpec, latent: LatentInput, width: int, attention: int = 0, mixing: float = 0.0
    ) -> None:
        super().__init__()
        self.mixing = mixing
        base, k = dcgan_layout(spec, "style")
        self.input = latent
        self.z_dim = latent.layout.size
        w_dim = max(latent.size, 4 * width)
        mapping: list[nn.Module] = []
        for i in range(MAPPING_LAYERS):
            mapping += [EqualLinear(latent.size if i == 0 else w_dim, w_dim, lr_mul=MAPPING_LR_MUL), nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*mapping)
        ch = width * 2 ** (k - 1)
        self.const = nn.Parameter(torch.randn(1, ch, base, base))
        layers = [StyleLayer(ch, ch, w_dim, upsample=False, attention=attention == base)]
        res = base
        for _ in range(k):
            out = max(ch // 2, width // 2, 1)
            res *= 2
            layers += [
                StyleLayer(ch, out, w_dim, upsample=True, attention=False),
                StyleLayer(out, out, w_dim, upsample=False, attention=attention == res),
            ]
            ch = out
        self.layers = nn.ModuleList(layers)
        self.to_image = nn.Conv2d(ch, spec.shape[0], 1)
        # the layers below full resolution draw the coarse structure; mode=mix crosses over after them
        self.coarse_layers = len(layers) - 2

    def style(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """w = mapping(z) (with the label embedding appended when conditional)."""
        v = _pixel_norm(self.input(z, y))  # pixel norm of the input, as StyleGAN
        if v.shape[1] > self.z_dim:
            # z and the label embedding normalised apart and given equal norms (StyleGAN2-ADA normalises them apart):
            # normalised together, the 10 label features were 14% of w's input and G drew the asked-for class for
            # 44% of its samples at 1,000 steps on mnist5k; apart, 86%
            label = v[:, self.z_dim :]
            scale = (self.z_dim / label.shape[1]) ** 0.5
            v = _pixel_norm(torch.cat([_pixel_norm(v[:, : self.z_dim]), _pixel_norm(label) * scale], 1))
        return self.mapping(v)

    def synthesize(self, styles: list[torch.Tensor]) -> torch.Tensor:
        """The image from one w per layer."""
        x = self.const.expand(styles[0].shape[0], -1, -1, -1)
        for layer, w in zip(self.layers, styles):
            x = layer(x, w)
        return torch.tanh(self.to_image(x))

    def mixed(
        self, z_coarse: torch.Tensor, z_fine: torch.Tensor, y: torch.Tensor | None = None, crossover: int | None = None
    ) -> torch.Tensor:
        """Styles from z_coarse for the first `crossover` layers (default: those below full resolution), z_fine after."""
        cut = self.coarse_layers if crossover is None else crossover
        w_coarse, w_fine = self.style(z_coarse, y), self.style(z_fine, y)
        return self.synthesize([w_coarse if i < cut else w_fine for i in range(len(self.layers))])

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        w = self.style(z, y)
        n_layers = len(self.layers)
        if not (self.training and self.mixing > 0):
            return self.synthesize([w] * n_layers)
        # StyleGAN's mixing regularisation, per sample and without a host sync: with probability p, the layers
        # from a random crossover in [1, L) on take the style of a second z
        w2 = self.style(self.input.layout.sample(len(z), z.device).to(z.dtype), y)
        crossover = torch.randint(1, n_layers, (len(z),), device=z.device)
        crossover = torch.where(torch.rand(len(z), device=z.device) < self.mixing, crossover, n_layers)
        return self.synthesize([torch.where((i < crossover)[:, None], w, w2) for i in range(n_layers)])
