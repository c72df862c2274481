"""LAPGAN (Denton et al. 2015): a Laplacian pyramid of GANs.

An image I_0 is split into band-pass residuals h_k = I_k - up(down(I_k)) and a small low-pass image I_K
(I_{k+1} = down(I_k)); `collapse` adds them back exactly. A plain GAN learns I_K; at every finer level a
conditional G_k maps a noise plane and the upsampled coarser image up(I_{k+1}) to the residual h_k. Sampling chains
the levels coarse to fine, each G_k conditioned on the image the levels below it made.

What each finer level trains on (`level_input`, `training.pyramid`):
- `real`, the paper's: the levels are independent GANs trained side by side on the real pyramid of the batch, G_k
  conditioned on the real up(I_{k+1}) and D_k judging (up(I_{k+1}), h_k) pairs. Sampled on generated coarser images
  it never saw, the chain falls apart (docs/results.md, "Where LAPGAN loses its quality").
- `generated`: G_k is conditioned on the image the coarser levels generate (detached: each level learns only to
  finish what it is given), and D_k judges whole level images, real I_k against up(coarser fake) + G_k's residual,
  so each level trains on what sampling will feed it.

The pyramid uses Burt & Adelson's 5-tap binomial filter with reflect padding: `down` blurs and keeps every second
pixel, `up` inserts zeros and blurs with 4x the gain.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError
from gan_cli.models.dropout import Dropout

_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)
SMALLEST = 7  # the coarsest level is the last size >= 7 that halving reaches (28 -> 14 -> 7, 32 -> 16 -> 8)


def _blur(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = torch.tensor(_BINOMIAL, device=x.device, dtype=x.dtype) / 16
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def down(x: torch.Tensor) -> torch.Tensor:
    return _blur(x)[..., ::2, ::2]


def up(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    spread = x.new_zeros(n, c, 2 * h, 2 * w)
    spread[..., ::2, ::2] = x
    return _blur(spread) * 4


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[h_0 (finest residual), ..., h_{K-1}, I_K (the low-pass image)], K = levels - 1."""
    out = []
    for _ in range(levels - 1):
        coarse = down(x)
        out.append(x - up(coarse))
        x = coarse
    return [*out, x]


def gaussian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[I_0 = x, I_1 = down(x), ..., I_K]: the whole image at every level, finest first."""
    out = [x]
    for _ in range(levels - 1):
        out.append(down(out[-1]))
    return out


def collapse(pyramid: list[torch.Tensor]) -> torch.Tensor:
    x = pyramid[-1]
    for h in reversed(pyramid[:-1]):
        x = up(x) + h
    return x


def level_sizes(side: int, levels: int = 0) -> list[int]:
    """Sides of the levels, finest first: halving while the side stays even and the half stays >= 7; `levels` > 0 caps it."""
    sizes = [side]
    while sizes[-1] % 2 == 0 and sizes[-1] // 2 >= SMALLEST and (levels == 0 or len(sizes) < levels):
        sizes.append(sizes[-1] // 2)
    return sizes


def _label_maps(y: Optional[torch.Tensor], classes: int, like: torch.Tensor) -> list[torch.Tensor]:
    """One-hot class planes of like's spatial size (none for an unconditional pyramid)."""
    if not classes:
        return []
    assert y is not None
    return [F.one_hot(y, classes).to(like.dtype)[:, :, None, None].expand(-1, -1, *like.shape[2:])]


class CoarseG(nn.Module):
    """z (and the class) -> the low-pass image I_K: the fully connected G the paper used at its smallest level (two hidden
    layers of 8 x width)."""

    def __init__(self, z_dim: int, channels: int, side: int, width: int, classes: int) -> None:
        super().__init__()
        self.shape = (channels, side, side)
        self.net = nn.Sequential(
            nn.Linear(z_dim + classes, 8 * width),
            nn.ReLU(),
            nn.Linear(8 * width, 8 * width),
            nn.ReLU(),
            nn.Linear(8 * width, channels * side * side),
            nn.Tanh(),
        )
        self.classes = classes

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        parts = [z, F.one_hot(y, self.classes).to(z.dtype)] if self.classes else [z]
        return self.net(torch.cat(parts, 1)).view(z.shape[0], *self.shape)


class ResidualG(nn.Module):
    """(noise plane, up(coarser image), class planes) -> the band-pass residual h_k: three 3x3 convs, no output squashing."""

    def __init__(self, channels: int, width: int, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.net = nn.Sequential(
            nn.Conv2d(channels + 1 + classes, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def forward(self, noise: torch.Tensor, coarse: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        return self.net(torch.cat([coarse, noise, *_label_maps(y, self.classes, coarse)], 1))


class LevelD(nn.Module):
    """One level's D: (up(coarser image), residual) pairs, or the low-pass image at the coarsest level -> a logit.

    Its input carries one more plane, the batch's standard deviation averaged over pixels (Karras et al.'s minibatch
    std-dev, on the input): a level whose G gives every z of a class the same digit shows a batch of near-zero spread,
    which real batches never have. Without it the class-conditional coarse G collapsed to one digit per class
    (fid5k_lenet 303, recall 0.001 after 1,500 steps on mnist5k)."""

    def __init__(self, in_channels: int, side: int, width: int, classes: int, dropout: float) -> None:
        super().__init__()
        self.classes = classes
        half = math.ceil(side / 2)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels + classes + 1, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1 if side % 2 == 0 else 2),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            Dropout(dropout),
            nn.Linear(2 * width * half * half, 1),
        )

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        spread = x.std(0, unbiased=False).mean() if len(x) > 1 else x.new_zeros(())
        return self.net(
            torch.cat([x, spread.expand(len(x), 1, *x.shape[2:]), *_label_maps(y, self.classes, x)], 1)
        ).squeeze(1)


class LapGenerator(nn.Module):
    """The pyramid of generators. z holds the coarse G's latent, then one noise plane per finer level (coarse to fine),
    so `sample_latent`, interpolation and truncation treat the whole pyramid's noise as one vector."""

    def __init__(self, spec: DataSpec, z_dim: int, width: int, levels: int, classes: int) -> None:
        super().__init__()
        channels, side = spec.shape[0], spec.shape[-1]
        self.sizes = level_sizes(side, levels)
        self.coarse_z = z_dim
        self.z_dim = z_dim + sum(s * s for s in self.sizes[:-1])
        self.classes = classes
        self.coarse = CoarseG(z_dim, channels, self.sizes[-1], width * 2 ** (len(self.sizes) - 1), classes)
        # finest first; twice the channels at each coarser level, as DCGAN does: the same cost per level
        self.residuals = nn.ModuleList(ResidualG(channels, width * 2**k, classes) for k in range(len(self.sizes) - 1))

    @property
    def levels(self) -> int:
        return len(self.sizes)

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the coarse latent, noise planes finest first)."""
        planes, at = [], self.coarse_z
        for s in reversed(self.sizes[:-1]):  # coarse to fine in z
            planes.append(z[:, at : at + s * s].view(z.shape[0], 1, s, s))
            at += s * s
        return z[:, : self.coarse_z], planes[::-1]

    def _labels(self, y: Optional[torch.Tensor], n: int, device: torch.device) -> Optional[torch.Tensor]:
        if not self.classes:
            return None
        return y if y is not None else torch.arange(n, device=device) % self.classes

    def pyramid_outputs(
        self, z: torch.Tensor, y: Optional[torch.Tensor] = None, detach: bool = False
    ) -> list[torch.Tensor]:
        """The image after each level, coarse to fine (each G_k conditioned on the levels below it). `detach`: no
        gradient flows from a level into the levels below it (training with level_input=generated)."""
        y = self._labels(y, z.shape[0], z.device)
        z0, planes = self.split(z)
        image = self.coarse(z0, y)
        outputs = [image]
        for k in reversed(range(self.levels - 1)):
            coarse = up(image.detach() if detach else image)
            image = coarse + self.residuals[k](planes[k], coarse, y)
            outputs.append(image)
        return outputs

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.pyramid_outputs(z, y)[-1].clamp(-1, 1)


class LapDiscriminator(nn.Module):
    """The pyramid of discriminators (finest first; the last judges the low-pass image). Called on a whole image it
    judges that image's own pyramid and returns the mean of the levels' logits, which is what scores and the
    contract probe see; training calls each level apart (`pyramid_step`). With level_input=generated each D_k reads
    the level image I_k alone; with real, (up(I_{k+1}), h_k) pairs."""

    def __init__(
        self, spec: DataSpec, width: int, levels: int, classes: int, dropout: float, level_input: str = "real"
    ) -> None:
        super().__init__()
        channels, side = spec.shape[0], spec.shape[-1]
        self.sizes = level_sizes(side, levels)
        self.on_generated = level_input == "generated"
        pairs = lambda k: k < len(self.sizes) - 1 and not self.on_generated  # noqa: E731
        self.levels_d = nn.ModuleList(
            LevelD(2 * channels if pairs(k) else channels, s, width * 2**k, classes, dropout)
            for k, s in enumerate(self.sizes)
        )
        self.classes = classes

    def level(
        self, k: int, target: torch.Tensor, coarse: Optional[torch.Tensor], y: Optional[torch.Tensor]
    ) -> torch.Tensor:
        return self.levels_d[k](target if coarse is None else torch.cat([coarse, target], 1), y)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.classes and y is None:
            y = torch.arange(len(x), device=x.device) % self.classes
        if self.on_generated:
            images = gaussian_pyramid(x, len(self.sizes))
            return torch.stack([self.level(k, image, None, y) for k, image in enumerate(images)]).mean(0)
        pyramid = laplacian_pyramid(x, len(self.sizes))
        logits = [
            self.level(k, pyramid[k], up(pyramid[k + 1]) if k < len(pyramid) - 1 else None, y)
            for k in range(len(pyramid))
        ]
        return torch.stack(logits).mean(0)


def build_lapgan(
    spec: DataSpec,
    z_dim: int,
    g_width: int,
    d_width: int,
    levels: int,
    classes: int,
    dropout: float,
    level_input: str = "real",
) -> tuple[nn.Module, nn.Module]:
    if not spec.is_image or spec.shape[1] != spec.shape[2]:
        raise GanError(
            f"model=lapgan builds a Laplacian pyramid of square images; dataset={spec.name} holds {spec.describe()}. Use an image dataset."
        )
    sizes = level_sizes(spec.shape[-1], levels)
    if len(sizes) < 2:
        raise GanError(
            f"model=lapgan needs at least two pyramid levels, but {spec.shape[-1]}x{spec.shape[-1]} images do not halve to a side >= {SMALLEST} "
            f"(model.levels={levels}). Use images of an even side >= 14 (dataset.image_size), or another model."
        )
    return LapGenerator(spec, z_dim, g_width, levels, classes), LapDiscriminator(
        spec, d_width, levels, classes, dropout, level_input
    )
