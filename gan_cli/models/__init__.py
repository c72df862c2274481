"""Generators and discriminators, built from the data's shape and `model.*` options.

`MODELS` is the one registry of architectures: a name users type -> a builder returning (G, D). A user's
`model._target_` (a callable `build(spec, **model.args) -> (G, D)`) goes through the same registry and the
same checks; what gan adds around any architecture (EMA, PacGAN's packing) applies to it too. Which
`_target_` a checkpoint may import is decided before anything is built (`gan_cli.components`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from omegaconf import OmegaConf
from torch import nn

from gan_cli.components import Component, Registry, target_args
from gan_cli.config import base_values
from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError, one_of
from gan_cli.models.dcgan import DCGANGenerator, dcgan_discriminator, resolutions
from gan_cli.models.ema import EMA, ema_decay  # noqa: F401  (re-exported)
from gan_cli.models.lapgan import build_lapgan
from gan_cli.models.layers import (
    CONDITIONINGS,
    MINIBATCH_LAYERS,
    HeadOptions,
    LatentInput,
    LatentLayout,
    apply_spectral_norm,
)
from gan_cli.models.mlp import G_ACTIVATIONS, MLPGenerator, mlp_discriminator
from gan_cli.models.progan import build_progan, check_growth_options
from gan_cli.models.shift import LogisticDiscriminator, ShiftGenerator
from gan_cli.models.style import StyleGenerator

D_NORMS = ("batch", "layer", "spectral", "none")
G_NORMS = ("batch", "virtual")


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
    "lapgan", _lapgan, uses=("z_dim", "g_width", "d_width", "dropout", "init_std", "g_spectral", "cond", "levels")
)
MODELS.add("progan", _progan, uses=("z_dim", "g_width", "d_width", "cond", "fade_steps", "stable_steps"))
_GROWTH_KEYS = ("fade_steps", "stable_steps")
CONV_MODELS = ("dcgan", "style")  # the models with feature maps (where self-attention can sit)


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
    the one conditioning it has) when the dataset has class labels, an unconditional one otherwise.

    Labels are the strongest signal a small image GAN can get: on mnist5k the conditional DCGAN reaches in 3,000
    steps a fid5k_lenet the unconditional one stays four to eight times above (README "Quality"). Concatenation
    rather than the projection D because it keeps more of each class's variety (recall 0.8 against 0.5).
    """
    if cond != "auto":
        return cond
    if spec.num_classes < 2:
        return "none"
    return "projection" if model == "progan" else "concat"


def build_models(cfg, spec: DataSpec) -> tuple[nn.Module, nn.Module]:
    """(G, D) for `cfg` (a ModelConfig) and the data described by `spec`."""
    component = MODELS.of(cfg)
    if component.target is not None:
        return _user_models(component, cfg, spec)
    if cfg.get("cond") == "auto":
        cfg = OmegaConf.merge(cfg, {"cond": resolve_cond(cfg.cond, spec, cfg.name)})
    if cfg.d_norm not in D_NORMS:
        raise one_of("model.d_norm", cfg.d_norm, D_NORMS)
    for key in ("z_dim", "g_width", "d_width"):
        if cfg.name != "shift" and cfg[key] < 1:
            raise GanError(f"model.{key}={cfg[key]} must be a positive integer.")
    if not 0.0 <= cfg.dropout < 1.0:
        raise GanError(f"model.dropout={cfg.dropout} must be in [0, 1).")
    _check_variant_options(cfg, spec)
    _check_pack(cfg, spec)
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
    its options from model.args), and the builder must return two modules; the contract probe comes after."""
    stray = _unused_keys("model", cfg, component)
    if stray:
        raise GanError(
            f"{', '.join(stray)} set{'s' if len(stray) == 1 else ''} an option of gan's built-in architectures, but model={cfg.name} is your "
            f"{component.target}, which reads only {', '.join('model.' + k for k in component.uses if k != 'name')}. Pass your model's options as model.args."
        )
    _check_pack(cfg, spec)
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


def _unused_keys(group: str, cfg, component: Component) -> list[str]:
    """'group.key=value' for every key `component` does not read that `cfg` sets away from the group's base default."""
    base = base_values(group)
    return [f"{group}.{k}={cfg[k]}" for k in base if k not in component.uses and k != "args" and cfg.get(k) != base[k]]


def _check_variant_options(cfg, spec: DataSpec) -> None:
    """Every combination the variant options do not support, as a GanError naming the way out."""
    if cfg.cond not in CONDITIONINGS:
        raise one_of("model.cond", cfg.cond, (*CONDITIONINGS, "auto"))
    if cfg.g_norm not in G_NORMS:
        raise one_of("model.g_norm", cfg.g_norm, G_NORMS)
    if not 0.0 <= cfg.style_mixing <= 1.0:
        raise GanError(
            f"model.style_mixing={cfg.style_mixing} is a probability: give a number in [0, 1] (StyleGAN used 0.9), or 0 for none."
        )
    if cfg.style_mixing > 0 and cfg.name != "style":
        raise GanError(
            f"model.style_mixing={cfg.style_mixing} mixes the per-layer styles of model=style; model={cfg.name} has none. Use model=style, or model.style_mixing=0."
        )
    if cfg.style_mixing > 0 and (cfg.info_cat or cfg.info_cont):
        raise GanError(
            f"model.style_mixing={cfg.style_mixing} gives a sample the styles of a second z, whose InfoGAN codes the Q head could not be "
            f"asked to recover (model.info_cat={cfg.info_cat}, model.info_cont={cfg.info_cont}). Use one or the other."
        )
    if cfg.cond == "cbn" and (cfg.name != "dcgan" or cfg.g_norm != "batch"):
        raise GanError(
            f"model.cond=cbn makes the batch norm layers of DCGAN's generator class-conditional (BigGAN); model={cfg.name} "
            f"with model.g_norm={cfg.g_norm} has none to condition. Use model=dcgan model.g_norm=batch, or another model.cond (concat, projection, acgan)."
        )
    if cfg.g_norm == "virtual" and cfg.name != "dcgan":
        raise GanError(
            f"model.g_norm=virtual replaces the BatchNorm layers of DCGAN's generator; model={cfg.name} has none. Use model=dcgan or model.g_norm=batch."
        )
    if cfg.levels < 0 or (cfg.levels and cfg.name != "lapgan"):
        raise GanError(
            f"model.levels={cfg.levels} sets the pyramid levels of model=lapgan (>= 2, or 0 for as many as the image size allows); model={cfg.name} has none."
        )
    if cfg.name == "lapgan":
        _check_lapgan(cfg)
    if cfg.name == "progan":
        _check_progan(cfg)
    else:
        grown = [f"model.{k}={cfg[k]}" for k in _GROWTH_KEYS if cfg[k] != base_values("model")[k]]
        if grown:
            raise GanError(
                f"{', '.join(grown)} sets how model=progan grows; model={cfg.name} does not grow. Use model=progan, or leave the key at its default."
            )
    if cfg.g_act not in G_ACTIVATIONS:
        raise one_of("model.g_act", cfg.g_act, G_ACTIVATIONS)
    if cfg.g_act != "leaky" and cfg.name != "mlp":
        raise GanError(
            f"model.g_act={cfg.g_act} sets the hidden activation of the MLP generator; model={cfg.name} has its own (DCGAN's G uses ReLU, as in the paper). Use model=mlp or leave model.g_act=leaky."
        )
    if cfg.minibatch not in MINIBATCH_LAYERS:
        raise one_of("model.minibatch", cfg.minibatch, MINIBATCH_LAYERS)
    if cfg.info_cat < 0 or cfg.info_cont < 0 or cfg.info_cat == 1:
        raise GanError(
            f"model.info_cat={cfg.info_cat} and model.info_cont={cfg.info_cont} must be >= 0 (and info_cat 0 or at least 2 categories)."
        )
    if cfg.name == "shift":
        fixed = (
            ("cond", "none"),
            ("minibatch", "none"),
            ("info_cat", 0),
            ("info_cont", 0),
            ("attention", 0),
            ("d_norm", "none"),
            ("g_spectral", False),
            ("g_norm", "batch"),
        )
        changed = [k for k, off in fixed if cfg[k] != off]
        if changed:
            raise GanError(
                f"model=shift is the fixed 1-D example and takes none of {', '.join('model.' + k for k in changed)}. Use model=mlp or model=dcgan for variants."
            )
        return
    if cfg.cond != "none" and spec.num_classes < 2:
        raise GanError(
            f"model.cond={cfg.cond} makes a conditional GAN, which needs class labels, but dataset={spec.name} is unlabelled. "
            f"Use a labelled dataset (mnist5k, mnist, fashion_mnist, cifar10, ring8, grid25, or an image_folder with one subfolder per class) or model.cond=none."
        )
    if cfg.attention:
        if cfg.name not in CONV_MODELS:
            raise GanError(
                f"model.attention={cfg.attention} needs feature maps; model={cfg.name} has none. Use model=dcgan or model=style, or model.attention=0."
            )
        allowed = resolutions(spec)
        if cfg.attention not in allowed:
            raise GanError(
                f"model.attention={cfg.attention} is not a feature-map side of model={cfg.name} on dataset={spec.name}. Allowed: {', '.join(map(str, allowed))} (or 0 for none)."
            )


def _check_lapgan(cfg) -> None:
    stray = _unused_keys("model", cfg, MODELS.get("lapgan"))
    if stray:
        raise GanError(
            f"{', '.join(stray)}: model=lapgan's levels are the paper's small MLP and conv nets, which read only "
            f"{', '.join('model.' + k for k in MODELS.get('lapgan').uses if k != 'name')}. Use model=dcgan or model=style for those options."
        )
    if cfg.cond not in ("none", "concat"):
        raise GanError(
            f"model.cond={cfg.cond}: model=lapgan conditions every level on the class by concatenation (model.cond=concat, or auto), or not at all (none)."
        )
    if cfg.pack > 1:
        raise GanError(
            f"model.pack={cfg.pack}: model=lapgan's discriminators judge one pyramid level of one sample each; use model.pack=1."
        )


def _check_progan(cfg) -> None:
    label = MODELS.get("progan")
    stray = _unused_keys("model", cfg, label)
    if stray:
        raise GanError(
            f"{', '.join(stray)}: model=progan is the paper's network (equalized learning rate, pixel norm, minibatch std-dev, "
            f"no BatchNorm), which reads only {', '.join('model.' + k for k in label.uses if k != 'name')}. Use model=dcgan or model=style for those options."
        )
    if cfg.cond not in ("none", "projection"):
        raise GanError(
            f"model.cond={cfg.cond}: model=progan takes the class through a projection D and a class embedding appended to z "
            f"(model.cond=projection, or auto on labelled data) or is unconditional (model.cond=none, the paper's)."
        )
    check_growth_options(cfg.fade_steps, cfg.stable_steps)


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


def _check_pack(cfg, spec: DataSpec) -> None:
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


def latent_layout(G: nn.Module) -> LatentLayout:
    """How G's z splits into noise and InfoGAN codes (all noise for generators without a layout)."""
    layout = getattr(getattr(G, "input", None), "layout", None)
    return layout if layout is not None else LatentLayout(G.z_dim)


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
    if truncation <= 0:
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
