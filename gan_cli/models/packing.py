"""PacGAN's packing (Lin et al. 2018): D judges m samples at once, and the options that packing rules out."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError


def packed_spec(spec: DataSpec, m: int) -> DataSpec:
    """The shape D sees under PacGAN's packing: m samples concatenated along the first axis (channels, or features)."""
    return dataclasses.replace(spec, shape=(spec.shape[0] * m, *spec.shape[1:]))


class PackedDiscriminator(nn.Module):
    """PacGAN (Lin et al. 2018): D judges m samples at once, all real or all fake.

    A batch of B samples becomes B/m packs, concatenated along channels (images) or features (vectors),
    and D returns one logit per pack. A collapsed G puts near-identical samples in a pack, which real
    packs never look like, so D can see the missing diversity that one sample at a time hides.
    """

    def __init__(self, D: nn.Module, m: int) -> None:
        super().__init__()
        self.inner, self.m = D, m

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) % self.m:
            raise GanError(
                f"model.pack={self.m} needs batches whose size is a multiple of {self.m}; got {len(x)}. Set train.batch_size to a multiple of {self.m}."
            )
        return x.reshape(len(x) // self.m, self.m * x.shape[1], *x.shape[2:])

    def forward_with_extras(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.inner.forward_with_extras(self.pack(x), None)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_with_extras(x, y)[0]


def check_pack(cfg, spec: DataSpec) -> None:
    if cfg.pack < 1:
        raise GanError(
            f"model.pack={cfg.pack} must be a positive number of samples per discriminator input (1 = no packing; PacGAN uses 2 to 4)."
        )
    if cfg.pack == 1:
        return
    if cfg.name == "shift":
        raise GanError(
            f"model.pack={cfg.pack} needs a discriminator body to widen; model=shift is the fixed 1-D example. Use model=mlp."
        )
    if spec.shape == (1,):  # the 1-D example's sample plots and dstar score draw D(x) of single points
        raise GanError(
            f"model.pack={cfg.pack} makes D judge packs of samples, but dataset={spec.name} is 1-D: its plots and its dstar score "
            f"read D(x) of single points. Use model.pack=1 there (ring8 and grid25 show what packing does to mode collapse)."
        )
    per_sample = [k for k, off in (("cond", "none"), ("info_cat", 0), ("info_cont", 0)) if cfg[k] != off]
    if per_sample:
        raise GanError(
            f"model.pack={cfg.pack} judges packs of samples, but {', '.join('model.' + k for k in per_sample)} "
            f"need one label or code per sample. Use model.pack=1, or model.cond=none and no InfoGAN codes for a packed D."
        )
