"""DiffAugment: differentiable augmentation of both D inputs (Zhao et al., 2020).

With little data, D memorises the real set and G stops learning. DiffAugment applies the same
random, differentiable transforms to the real *and* the fake batch before D sees them, so D cannot
tell them apart by augmentation artefacts and G still gets gradients through the transform. The
ops and their magnitudes follow the paper's reference code; `strength` scales them linearly so a
sweep can cross "how much augmentation" with the other axes.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from gan_cli.config import AugmentPolicy, values_of
from gan_cli.errors import GanError, one_of
from gan_cli.parallel import per_sample

POLICIES = values_of(AugmentPolicy)  # applied in this order, whatever order the user wrote
TRANSLATION_RATIO = 0.125  # largest shift, as a fraction of the image side
CUTOUT_RATIO = 0.5  # side of the erased square, as a fraction of the image side


def parse_policy(text: str) -> tuple[str, ...]:
    """ "color,translation" -> ("color", "translation"); "none" or "" -> () (augmentation off)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return ()
    for name in names:
        if name not in POLICIES:
            raise one_of("train.augment", name, POLICIES + ("none",))
    return tuple(p for p in POLICIES if p in names)


def _uniform(x: torch.Tensor, gen: Optional[torch.Generator]) -> torch.Tensor:
    """One U(0,1) per sample, shaped (N,1,1,1), drawn on the generator's device so a CPU generator
    gives the same numbers whatever device the images live on."""
    device = gen.device if gen is not None else x.device
    u = per_sample(lambda n: torch.rand(n, 1, 1, 1, generator=gen, device=device), x.shape[0])
    return u.to(device=x.device, dtype=x.dtype)


def _randint(low: int, high: int, n: int, x: torch.Tensor, gen: Optional[torch.Generator]) -> torch.Tensor:
    """n integers in [low, high), shaped (n,1,1), on x's device."""
    device = gen.device if gen is not None else x.device
    return per_sample(lambda m: torch.randint(low, high, (m, 1, 1), generator=gen, device=device), n).to(x.device)


def color(x: torch.Tensor, strength: float, gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """Brightness + U(-.5,.5), saturation x U(0,2), contrast x U(.5,1.5) at strength 1 (per sample).
    Saturation is skipped for one channel: a grayscale image has no colour to scale."""
    x = x + (_uniform(x, gen) - 0.5) * strength
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (1 + (_uniform(x, gen) * 2 - 1) * strength) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (1 + (_uniform(x, gen) - 0.5) * strength) + mean


def translation(x: torch.Tensor, strength: float, gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """Integer shifts up to 1/8 of each side, filled with 0 (mid-grey in [-1,1]).

    As in the reference code: pad by one zero pixel, then gather every output pixel from its
    shifted source index clamped into the padded frame, so anything shifted in from outside reads
    the zero border. A gather is differentiable and vectorised over the batch."""
    n, c, h, w = x.shape
    ratio = min(TRANSLATION_RATIO * strength, 1.0)
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy, dx = _randint(-sh, sh + 1, n, x, gen), _randint(-sw, sw + 1, n, x, gen)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1)
    index = (rows * (w + 2) + cols).view(n, 1, h * w).expand(n, c, h * w)
    padded = F.pad(x, [1, 1, 1, 1]).flatten(2)
    return padded.gather(2, index).view(n, c, h, w)


def cutout(x: torch.Tensor, strength: float, gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """Zero a square of half the side per sample; its centre is uniform over the image, so the
    square may be clipped by the border (down to a quarter of its area), as in the paper."""
    n, _, h, w = x.shape
    ratio = min(CUTOUT_RATIO * strength, 1.0)
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = _randint(0, h + (1 - sh % 2), n, x, gen) - sh // 2
    left = _randint(0, w + (1 - sw % 2), n, x, gen) - sw // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + sh) & (cols >= left) & (cols < left + sw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPS: dict[str, Callable[[torch.Tensor, float, Optional[torch.Generator]], torch.Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


class DiffAugment:
    """Random differentiable augmentation of a batch of NCHW images in [-1, 1] (1 or 3 channels).

    Call it separately on the real and on the fake batch, in D's step and in G's step: each call
    draws fresh, independent parameters per sample, while the policy (which ops) is shared. That
    is the paper's recipe; augmenting only reals would teach G to produce augmented images.
    Gradients flow to the input, so G learns through the augmentation.
    """

    def __init__(self, policy: tuple[str, ...], strength: float = 1.0) -> None:
        unknown = [p for p in policy if p not in POLICIES]
        if unknown:
            raise one_of("DiffAugment policy", unknown[0], POLICIES)
        if not strength >= 0:  # also rejects NaN
            raise GanError(f"DiffAugment strength must be >= 0, got {strength!r}.")
        self.policy = tuple(p for p in POLICIES if p in policy)
        self.strength = float(strength)

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Augmented copy of x, same shape, device and dtype; x itself when off (strength 0)."""
        if not self.policy or self.strength == 0:
            return x
        for name in self.policy:
            x = OPS[name](x, self.strength, generator)
        return x

    def __repr__(self) -> str:
        return f"DiffAugment(policy={self.policy!r}, strength={self.strength})"
