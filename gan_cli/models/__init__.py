"""Generators and discriminators, built from the data's shape and `model.*` options: the face of the package.

`registry` holds `MODELS` (a name users type -> a builder returning (G, D); a user's `model._target_` goes through
the same registry and checks) and `build_models`; `options` checks the variant options; `packing` is PacGAN's
packed D; the architectures live in their own modules (mlp, dcgan, style, shift, lapgan, progan, layers, ema).
"""

from gan_cli.models.ema import EMA, ema_decay
from gan_cli.models.options import D_NORMS, G_NORMS
from gan_cli.models.packing import PackedDiscriminator, packed_spec
from gan_cli.models.registry import (
    MODELS,
    build_models,
    init_weights,
    latent_layout,
    model_label,
    num_classes,
    resolve_cond,
    sample_latent,
    scored_classes,
    truncate,
)

__all__ = [
    "D_NORMS",
    "EMA",
    "G_NORMS",
    "MODELS",
    "PackedDiscriminator",
    "build_models",
    "ema_decay",
    "init_weights",
    "latent_layout",
    "model_label",
    "num_classes",
    "scored_classes",
    "packed_spec",
    "resolve_cond",
    "sample_latent",
    "truncate",
]
