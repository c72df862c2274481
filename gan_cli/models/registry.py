"""The registry of architectures and `build_models`: generators and discriminators, built from the data's shape and `model.*` options.

`MODELS` is the one registry of architectures: a name users type -> a builder returning (G, D). A user's
`model._target_` (a callable `build(spec, **model.args) -> (G, D)`) goes through the same registry and the
same checks; what gan adds around any architecture (EMA, PacGAN's packing) applies to it too. Which
`_target_` a checkpoint may import is decided before anything is built (`gan_cli.components`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import torch
from omegaconf import OmegaConf
from torch import nn

from gan_cli.components import Component, Registry, target_args
from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError
from gan_cli.models.dcgan import DCGANGenerator, dcgan_discriminator
from gan_cli.models.lapgan import build_lapgan
from gan_cli.models.layers import (
    HeadOptions,
    LatentInput,
    LatentLayout,
    apply_spectral_norm,
)
from gan_cli.models.mlp import MLPGenerator, mlp_discriminator
from gan_cli.models.options import check_defaults_kept, check_model_options
from gan_cli.models.packing import PackedDiscriminator, check_pack, packed_spec
from gan_cli.models.progan import build_progan
from gan_cli.models.shift import LogisticDiscriminator, ShiftGenerator
from gan_cli.models.style import StyleGenerator


def _head(cfg, spec: DataSpec) -> HeadOptions:
    # BigGAN pairs G's conditional batch norm with the projection discriminator
    return HeadOptions(
        "projection" if cfg.cond == "cbn" else cfg.cond, spec.num_classes, cfg.minibatch, cfg.info_cat, cfg.info_cont
    )


def _latent(cfg, spec: DataSpec) -> LatentInput:
    """z (and InfoGAN's codes), with the label embedding appended for every conditioning but cbn, which feeds
    the label to G's norm layers instead."""
    return LatentInput(
        LatentLayout(cfg.z_dim, cfg.info_cat, cfg.info_cont), spec.num_classes if cfg.cond not in ("none", "cbn") else 0
    )


def _mlp(cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    return MLPGenerator(spec, _latent(cfg, spec), cfg.g_width, cfg.g_act), mlp_discriminator(
        spec, cfg.d_width, cfg.dropout, cfg.d_norm, _head(cfg, spec)
    )


def _dcgan(cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    G = DCGANGenerator(
        spec, _latent(cfg, spec), cfg.g_width, cfg.attention, cfg.g_norm, spec.num_classes if cfg.cond == "cbn" else 0
    )
    return G, dcgan_discriminator(spec, cfg.d_width, cfg.d_norm, _head(cfg, spec), cfg.attention)


def _style(cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    G = StyleGenerator(spec, _latent(cfg, spec), cfg.g_width, cfg.attention, cfg.style_mixing)
    return G, dcgan_discriminator(spec, cfg.d_width, cfg.d_norm, _head(cfg, spec), cfg.attention)


def _lapgan(cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    return build_lapgan(
        spec,
        cfg.z_dim,
        cfg.g_width,
        cfg.d_width,
        cfg.levels,
        spec.num_classes if cfg.cond == "concat" else 0,
        cfg.dropout,
        str(cfg.level_input),
    )


def _progan(cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    return build_progan(spec, cfg.z_dim, cfg.g_width, cfg.d_width, spec.num_classes if cfg.cond == "projection" else 0)


def _shift(cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    return ShiftGenerator(spec), LogisticDiscriminator(spec)


def _from_target(build: Callable[..., tuple[nn.Module, nn.Module]]) -> Callable[..., tuple[nn.Module, nn.Module]]:
    return lambda cfg, spec: build(spec, **target_args(cfg))


# the keys of every built-in network: the latent, the widths, init, normalisation and the heads of D
_ARCH_KEYS = (
    "z_dim",
    "g_width",
    "d_width",
    "d_norm",
    "init_std",
    "g_spectral",
    "cond",
    "minibatch",
    "info_cat",
    "info_cont",
)
MODELS = Registry(
    "model", "name", shared=("name", "ema", "ema_warmup", "pack"), target_uses=("_target_", "args"), adapt=_from_target
)
MODELS.add("mlp", _mlp, uses=(*_ARCH_KEYS, "dropout", "g_act"))
MODELS.add("dcgan", _dcgan, uses=(*_ARCH_KEYS, "g_norm", "attention"))
MODELS.add("style", _style, uses=(*_ARCH_KEYS, "attention", "style_mixing"))
MODELS.add("shift", _shift, uses=("init_std",))
MODELS.add(
    "lapgan",
    _lapgan,
    uses=("z_dim", "g_width", "d_width", "dropout", "init_std", "g_spectral", "cond", "levels", "level_input"),
)
MODELS.add("progan", _progan, uses=("z_dim", "g_width", "d_width", "cond", "fade_steps", "stable_steps"))


def init_weights(module: nn.Module, std: float) -> None:
    """DCGAN's initialisation: conv/linear weights ~ N(0, std), norm scales ~ N(1, std), biases 0.

    A layer whose own initialisation is part of its design says so with `keeps_own_init = True` and is left
    alone, with everything inside it: AdaIN starts near the identity whatever `model.init_std` is."""
    if std <= 0:
        return
    own = {id(inner) for m in module.modules() if getattr(m, "keeps_own_init", False) for inner in m.modules()}
    for m in module.modules():
        if id(m) in own:
            continue
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def resolve_cond(cond: str, spec: DataSpec, model: str = "dcgan") -> str:
    """model.cond=auto: a conditional GAN (label concatenated to G's z and D's input; model=progan: the projection D,
    the one conditioning it has) when the data comes with labels (its classes, or the k-means clusters
    `dataset.labels` puts in their place on unlabelled images), an unconditional one otherwise.

    Labels are the strongest signal a small image GAN can get: on mnist5k the conditional DCGAN reaches in 3,000
    steps a fid5k_lenet the unconditional one stays four to eight times above (README "Quality"). Concatenation
    rather than the projection D because it keeps more of each class's variety (recall 0.8 against 0.5).
    """
    if cond != "auto":
        return cond
    if spec.num_classes < 2:
        return "none"
    return "projection" if model == "progan" else "concat"


def build_models(cfg, spec: DataSpec, defaults: Optional[Mapping[str, Any]] = None) -> tuple[nn.Module, nn.Module]:
    """(G, D) for `cfg` (a ModelConfig) and the data described by `spec`. With `defaults` (the model group's base
    values, given by whoever checks a run's options), keys the architecture does not read must keep them."""
    component = MODELS.of(cfg)
    if defaults is not None:
        check_defaults_kept(cfg, component, defaults)
    if component.target is not None:
        return _user_models(component, cfg, spec)
    if cfg.get("cond") == "auto":
        cfg = OmegaConf.merge(cfg, {"cond": resolve_cond(cfg.cond, spec, cfg.name)})
    check_model_options(cfg, spec)
    check_pack(cfg, spec)
    G, D = component.build(cfg, spec)
    if cfg.pack > 1:  # D of the same architecture, sized for m samples stacked along the channel (or feature) axis
        D = PackedDiscriminator(component.build(cfg, packed_spec(spec, cfg.pack))[1], cfg.pack)
    init_weights(G, cfg.init_std)
    init_weights(D, cfg.init_std)
    if cfg.d_norm == "spectral":  # after the initialisation, which writes the raw weights
        apply_spectral_norm(D)
    if cfg.g_spectral:
        apply_spectral_norm(G)
    return G, D


def _user_models(component: Component, cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    """A `_target_` model: the keys of gan's own architectures must be left at their defaults (a user's network reads
    its options from model.args; build_models checked that when given the defaults), and the builder must return two
    modules; the contract probe comes after."""
    check_pack(cfg, spec)
    G, D = _user_pair(component, cfg, spec)
    if cfg.pack > 1:  # the user's D, built for m samples stacked along the first axis
        D = PackedDiscriminator(_user_pair(component, cfg, packed_spec(spec, cfg.pack))[1], cfg.pack)
    return G, D


def _user_pair(component: Component, cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    try:
        built = component.build(cfg, spec)
    except (TypeError, ValueError) as exc:
        raise GanError(
            f"model._target_={component.target!r} could not build a model for {spec.describe()} with model.args={target_args(cfg)}: {exc}."
        ) from exc
    if not (isinstance(built, (tuple, list)) and len(built) == 2 and all(isinstance(m, nn.Module) for m in built)):
        raise GanError(
            f"model._target_={component.target!r} returned {type(built).__name__}; the contract is a pair (G, D) of torch.nn.Module (gan_cli/contracts.py)."
        )
    return built[0], built[1]


def model_label(cfg) -> str:
    """'model=dcgan', or 'model=tiny (my_pkg.nets.build)' for a user's model: how messages name it."""
    return f"model={cfg.name}" + (f" ({cfg._target_})" if cfg.get("_target_") else "")


def latent_layout(G: nn.Module) -> LatentLayout:
    """How G's z splits into noise and InfoGAN codes (all noise for generators without a layout)."""
    layout = getattr(getattr(G, "input", None), "layout", None)
    return layout if layout is not None else LatentLayout(G.z_dim)


def scored_classes(G: nn.Module, spec: DataSpec) -> int:
    """Classes whose labels a score may check G's samples against (`cond`): G's classes when they are the data's
    own, 0 for an unconditional G or one conditioned on k-means clusters (a cluster is no class to check)."""
    return num_classes(G) if spec.conditions_on_classes else 0


def num_classes(G: nn.Module) -> int:
    """Classes a conditional G takes (0: not conditional)."""
    embed = getattr(G, "class_embed", None)  # model.cond=cbn
    if embed is not None:
        return embed.num_embeddings
    labels = getattr(getattr(G, "input", None), "labels", None)
    if labels is not None:
        return labels.num_classes
    return int(getattr(G, "classes", 0))  # a G that reads the labels itself (model=lapgan's levels) says how many


def sample_latent(
    G: nn.Module, n: int, device: torch.device | str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z ~ N(0, I) of G's latent size, with InfoGAN's codes (one-hot, uniform) in its tail when G has them."""
    return latent_layout(G).sample(n, device, generator)


def truncate(G: nn.Module, z: torch.Tensor, truncation: float | None) -> torch.Tensor:
    """The truncation trick (BigGAN): z's noise part mapped to N(0, 1) truncated to [-t, t].

    The map is the monotone one (through the normal CDF), so every z keeps its place and a seed
    still names the same sample, drawn closer to the mode: less diverse, cleaner. InfoGAN codes
    in the tail of z are left as they are.
    """
    if truncation is None:
        return z
    if not truncation > 0:  # NaN too
        raise GanError(
            f"truncation={truncation} must be a positive number of standard deviations (e.g. 0.7), or null for none."
        )
    n = latent_layout(G).n_noise
    normal = torch.distributions.Normal(0.0, 1.0)
    lo = float(normal.cdf(torch.tensor(-float(truncation))))
    u = (lo + normal.cdf(z[:, :n].double().cpu()) * (1 - 2 * lo)).clamp(1e-12, 1 - 1e-12)
    out = z.clone()
    out[:, :n] = normal.icdf(u.float()).clamp(-truncation, truncation).to(z.device, z.dtype)
    return out
