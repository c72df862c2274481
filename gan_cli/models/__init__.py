"""Generators and discriminators, built from the data's shape and `model.*` options.

`MODELS` is the one registry of architectures: a name users type -> a builder returning (G, D).
A name registry rather than Hydra's `_target_`: checkpoints carry their config, and
instantiating a `_target_` from a downloaded checkpoint could call any importable function.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError, one_of
from gan_cli.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_cli.models.mlp import MLPDiscriminator, MLPGenerator
from gan_cli.models.shift import LogisticDiscriminator, ShiftGenerator

D_NORMS = ("batch", "layer", "none")


def _mlp(cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    return MLPGenerator(spec, cfg.z_dim, cfg.g_width), MLPDiscriminator(spec, cfg.d_width, cfg.dropout, cfg.d_norm)


def _dcgan(cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    return DCGANGenerator(spec, cfg.z_dim, cfg.g_width), DCGANDiscriminator(spec, cfg.d_width, cfg.d_norm)


def _shift(cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    return ShiftGenerator(spec), LogisticDiscriminator(spec)


MODELS: dict[str, Callable[..., tuple[nn.Module, nn.Module]]] = {"mlp": _mlp, "dcgan": _dcgan, "shift": _shift}


def init_weights(module: nn.Module, std: float) -> None:
    """DCGAN's initialisation: conv/linear weights ~ N(0, std), norm scales ~ N(1, std), biases 0."""
    if std <= 0:
        return
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def build_models(cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    """(G, D) for `cfg` (a ModelConfig) and the data described by `spec`."""
    if cfg.name not in MODELS:
        raise one_of("model", cfg.name, MODELS)
    if cfg.d_norm not in D_NORMS:
        raise one_of("model.d_norm", cfg.d_norm, D_NORMS)
    for key in ("z_dim", "g_width", "d_width"):
        if cfg.name != "shift" and cfg[key] < 1:
            raise GanError(f"model.{key}={cfg[key]} must be a positive integer.")
    if not 0.0 <= cfg.dropout < 1.0:
        raise GanError(f"model.dropout={cfg.dropout} must be in [0, 1).")
    G, D = MODELS[cfg.name](cfg, spec)
    init_weights(G, cfg.init_std)
    init_weights(D, cfg.init_std)
    return G, D


def sample_latent(G: nn.Module, n: int, device: torch.device | str, generator: torch.Generator | None = None) -> torch.Tensor:
    """z ~ N(0, I) of G's latent size."""
    return torch.randn(n, G.z_dim, device=device, generator=generator)
