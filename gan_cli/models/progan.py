"""Progressive growing of GANs (Karras et al. 2018).

G and D start at a small side (4x4; 7x7 for 28 px data) and grow one block per doubling until the data's side.
Every block is built at the start and waits for its stage: while a new block fades in, G's output is
(1 - alpha) * up(toRGB of the previous block) + alpha * toRGB(new block), and D reads
(1 - alpha) * fromRGB(down(x)) + alpha * new block(fromRGB(x)), alpha rising linearly from 0 to 1 over
`model.fade_steps` generator steps; then `model.stable_steps` at that side (`Growth`).

The paper's other three pieces are here too: every weight is stored ~ N(0, 1) and scaled at run time by He's
constant sqrt(2 / fan_in) ("equalized learning rate": Adam's step then moves every layer alike, whatever its fan-in);
G normalises each pixel's feature vector to unit length after every conv (pixelwise feature normalisation, in place
of BatchNorm); D's last block reads one more plane, the batch's standard deviation (minibatch std-dev).

Sizes: in training mode G returns images at the current stage's side, which is what D, the penalties and DiffAugment
work on (a gradient penalty taken on upscaled images would measure the gradient norm divided by the scale factor).
In eval mode (samples, scores, `gan sample`, the EMA copy) G returns them upscaled to the data's side with
nearest-neighbour copies, so every other part of gan sees the data's shape. D accepts either: an image of the data's
side is average-pooled to the stage's side first, the exact inverse of the nearest-neighbour upscaling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError
from gan_cli.models.layers import LatentInput, LatentLayout

SMALLEST = 4  # growing starts at the last side >= 4 that halving the data's side reaches (32 -> 4, 28 -> 7, 64 -> 4)
LEAK = 0.2


def stage_sides(side: int) -> list[int]:
    """The side of every stage, the first (smallest) first: 28 -> [7, 14, 28], 32 -> [4, 8, 16, 32]."""
    sides = [side]
    while sides[0] % 2 == 0 and sides[0] // 2 >= SMALLEST:
        sides.insert(0, sides[0] // 2)
    return sides


def stage_widths(width: int, stages: int) -> list[int]:
    """Channels per stage: `width` at the data's side, doubled at each smaller side, capped at 8 x width."""
    return [width * min(8, 2 ** (stages - 1 - i)) for i in range(stages)]


@dataclass(frozen=True)
class Growth:
    """When each block grows in: stage 0 for `stable` steps, then per new stage `fade` steps with alpha from 0 towards 1
    and `stable` steps at alpha 1; the last stage stays until the run ends."""

    stages: int
    fade: int
    stable: int

    def at(self, step: int) -> tuple[int, float]:
        """(stage, alpha) for generator step `step` (counted from 1): alpha = (steps already done in the fade) / fade."""
        done = step - 1
        if done < self.stable:
            return 0, 1.0
        done -= self.stable
        period = self.fade + self.stable
        stage = 1 + done // period
        if stage >= self.stages:
            return self.stages - 1, 1.0
        within = done % period
        return stage, (within / self.fade if within < self.fade else 1.0)

    def grown_at(self) -> int:
        """The first generator step at the data's side with alpha = 1."""
        return (self.stages - 1) * (self.fade + self.stable) + 1


def check_growth_options(fade: int, stable: int) -> None:
    if fade < 0 or stable < 0 or fade + stable < 1:
        raise GanError(
            f"model.fade_steps={fade} and model.stable_steps={stable} must be >= 0 and not both 0: each new block fades in over "
            f"fade_steps generator steps, then trains stable_steps at its side (the paper: 800k images each)."
        )


class EqualizedConv2d(nn.Module):
    """A conv whose weights are stored ~ N(0, 1) and multiplied by gain / sqrt(fan_in) in every forward."""

    keeps_own_init = True  # init_weights leaves it alone: N(0, 1) and the run-time scale are the method

    def __init__(self, c_in: int, c_out: int, kernel: int, gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = gain / math.sqrt(c_in * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    keeps_own_init = True

    def __init__(self, d_in: int, d_out: int, gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in))
        self.bias = nn.Parameter(torch.zeros(d_out))
        self.scale = gain / math.sqrt(d_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """Each pixel's feature vector scaled to unit root mean square (the paper's epsilon 1e-8)."""
    return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)


# int(): the sides are fixed by the stage, so `gan export`'s tracer records the factor as the constant it is
def upscale(x: torch.Tensor, side: int) -> torch.Tensor:
    return x if x.shape[-1] == side else F.interpolate(x, scale_factor=side // int(x.shape[-1]), mode="nearest")


def downscale(x: torch.Tensor, side: int) -> torch.Tensor:
    return x if x.shape[-1] == side else F.avg_pool2d(x, int(x.shape[-1]) // side)


class Growing(nn.Module):
    """What G and D share: the stage sides, the current (stage, alpha), kept in state_dict (checkpoints, `gan sample`)."""

    def __init__(self, side: int) -> None:
        super().__init__()
        self.sides = stage_sides(side)
        self.stage, self.alpha = len(self.sides) - 1, 1.0  # a model built on its own is fully grown

    @property
    def side(self) -> int:
        """The side of the images this stage makes / reads."""
        return self.sides[self.stage]

    def set_progress(self, stage: int, alpha: float) -> None:
        self.stage, self.alpha = int(stage), float(alpha)

    def get_extra_state(self) -> dict[str, Any]:
        return {"stage": self.stage, "alpha": self.alpha}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.set_progress(state["stage"], state["alpha"])


def _conv_block(c_in: int, c_out: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers += [EqualizedConv2d(c, c_out, 3), nn.LeakyReLU(LEAK)]
        if norm:
            layers.append(_PixelNorm())
    return nn.Sequential(*layers)


class _PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x)


class ProGenerator(Growing):
    """z (pixel-normalised, with the class embedding appended when conditional) -> a dense layer to the first stage's
    feature map -> one block (upsample x2, two 3x3 convs) per later stage; a 1x1 toRGB per stage, linear as in the paper."""

    def __init__(self, spec: DataSpec, z_dim: int, width: int, classes: int = 0) -> None:
        super().__init__(spec.shape[1])
        self.z_dim = z_dim
        self.full = spec.shape[1]
        widths = stage_widths(width, len(self.sides))
        self.input = LatentInput(LatentLayout(z_dim), classes)
        first = self.sides[0]
        self.dense = EqualizedLinear(
            self.input.size, widths[0] * first * first, gain=math.sqrt(2) / 4
        )  # the paper's 4x4 "conv" from z
        self.first_conv = _conv_block(widths[0], widths[0], norm=True)[:3]
        self.blocks = nn.ModuleList(_conv_block(widths[i - 1], widths[i], norm=True) for i in range(1, len(self.sides)))
        self.to_rgb = nn.ModuleList(EqualizedConv2d(w, spec.shape[0], 1, gain=1.0) for w in widths)
        self._first_shape = (widths[0], first, first)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.dense(pixel_norm(self.input(z, y)))
        h = pixel_norm(F.leaky_relu(h.view(z.shape[0], *self._first_shape), LEAK))
        h = self.first_conv(h)
        previous = h
        for block in self.blocks[: self.stage]:
            previous = h
            h = block(F.interpolate(h, scale_factor=2, mode="nearest"))
        x = self.to_rgb[self.stage](h)
        if self.stage > 0 and self.alpha < 1.0:  # the new block fades in over the previous stage's image
            x = torch.lerp(upscale(self.to_rgb[self.stage - 1](previous), self.side), x, self.alpha)
        return x if self.training else upscale(x, self.full)


class ProDiscriminator(Growing):
    """fromRGB (1x1) at the stage's side -> one block (two 3x3 convs, average-pool /2) per stage above the first -> the
    final block: minibatch std-dev plane, 3x3 conv, dense, dense to the logit (plus the projection term when conditional)."""

    couples_batch = True  # the minibatch std-dev plane (models.layers.batch_coupled)

    def __init__(self, spec: DataSpec, width: int, classes: int = 0) -> None:
        super().__init__(spec.shape[1])
        self.full = spec.shape[1]
        widths = stage_widths(width, len(self.sides))
        self.from_rgb = nn.ModuleList(
            nn.Sequential(EqualizedConv2d(spec.shape[0], w, 1), nn.LeakyReLU(LEAK)) for w in widths
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(
                EqualizedConv2d(widths[i], widths[i], 3),
                nn.LeakyReLU(LEAK),
                EqualizedConv2d(widths[i], widths[i - 1], 3),
                nn.LeakyReLU(LEAK),
            )
            for i in range(1, len(self.sides))
        )
        first, w0 = self.sides[0], widths[0]
        self.final_conv = nn.Sequential(EqualizedConv2d(w0 + 1, w0, 3), nn.LeakyReLU(LEAK))
        self.final_dense = nn.Sequential(EqualizedLinear(w0 * first * first, w0), nn.LeakyReLU(LEAK))
        self.out = EqualizedLinear(w0, 1, gain=1.0)
        self.project = nn.Embedding(classes, w0) if classes else None  # Miyato & Koyama's projection discriminator
        self.classes = classes

    def forward_with_extras(
        self, x: torch.Tensor, y: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        side = self.side
        if x.shape[-1] not in (side, self.full):
            raise GanError(
                f"model=progan's D at stage {self.stage} reads images of side {side} (or {self.full}, pooled); got {tuple(x.shape)}."
            )
        x = downscale(x, side)
        h = self.from_rgb[self.stage](x)
        if self.stage > 0:
            h = F.avg_pool2d(self.blocks[self.stage - 1](h), 2)
            if self.alpha < 1.0:  # the new block fades in over the previous stage's fromRGB of the halved image
                h = torch.lerp(self.from_rgb[self.stage - 1](F.avg_pool2d(x, 2)), h, self.alpha)
            for block in reversed(self.blocks[: self.stage - 1]):
                h = F.avg_pool2d(block(h), 2)
        std = torch.sqrt(h.float().var(0, unbiased=False) + 1e-8).mean().to(h.dtype)  # one number: the batch's spread
        h = self.final_conv(torch.cat([h, std.expand(len(h), 1, *h.shape[2:])], 1))
        features = self.final_dense(h.flatten(1))
        logit = self.out(features).squeeze(1)
        if self.project is not None:
            assert y is not None, "a conditional D needs the labels"
            logit = logit + (self.project(y) * features).sum(1)
        return logit, {"features": features}

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.forward_with_extras(x, y)[0]

    def real_view(self, x: torch.Tensor) -> torch.Tensor:
        """A real batch as the current stage's G would make it: pooled to the stage's side, and during a fade blended
        with its own halved-and-upscaled copy by the same alpha (the paper's fade of the reals)."""
        x = downscale(x, self.side)
        if self.stage > 0 and self.alpha < 1.0:
            x = torch.lerp(upscale(F.avg_pool2d(x, 2), self.side), x, self.alpha)
        return x


def build_progan(
    spec: DataSpec, z_dim: int, g_width: int, d_width: int, classes: int
) -> tuple[ProGenerator, ProDiscriminator]:
    if not spec.is_image:
        raise GanError(
            f"model=progan grows convolutional G and D over image sides; dataset={spec.name} holds points. Use model=mlp for toy data."
        )
    if len(stage_sides(spec.shape[1])) < 2 or spec.shape[1] != spec.shape[2]:
        raise GanError(
            f"model=progan grows square images by doubling from a side >= {SMALLEST}; {spec.describe()} has no smaller stage. "
            f"Use model=dcgan, or images whose side halves at least once (28, 32, 64)."
        )
    return ProGenerator(spec, z_dim, g_width, classes), ProDiscriminator(spec, d_width, classes)
