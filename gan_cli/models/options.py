"""The `model.*` options checked before anything is built: each unsupported combination is one GanError that names
the way out."""

from __future__ import annotations

from typing import Any, Mapping

from gan_cli.components import Component
from gan_cli.config import DNorm, GNorm, values_of
from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError, one_of
from gan_cli.models.dcgan import resolutions
from gan_cli.models.layers import (
    CONDITIONINGS,
    MINIBATCH_LAYERS,
)
from gan_cli.models.mlp import G_ACTIVATIONS
from gan_cli.models.progan import check_growth_options

D_NORMS = values_of(DNorm)
G_NORMS = values_of(GNorm)
_GROWTH_KEYS = ("fade_steps", "stable_steps")
CONV_MODELS = ("dcgan", "style")  # the models with feature maps (where self-attention can sit)


def unused_keys(cfg, component: Component, defaults: Mapping[str, Any]) -> list[str]:
    """'model.key=value' for every key `component` does not read that `cfg` sets away from its default."""
    return [
        f"model.{k}={cfg[k]}" for k in defaults if k not in component.uses and k != "args" and cfg.get(k) != defaults[k]
    ]


def check_defaults_kept(cfg, component: Component, defaults: Mapping[str, Any]) -> None:
    """The keys an architecture does not read stay at their defaults (`defaults`: the group's base values, which the
    caller reads from the config; models/ reads no YAML): a user's `_target_` model reads none of the built-ins'
    keys, model=lapgan and model=progan read few, and only model=progan grows."""
    stray = unused_keys(cfg, component, defaults)
    if component.target is not None and stray:
        raise GanError(
            f"{', '.join(stray)} set{'s' if len(stray) == 1 else ''} an option of gan's built-in architectures, but model={cfg.name} is your "
            f"{component.target}, which reads only {', '.join('model.' + k for k in component.uses if k != 'name')}. Pass your model's options as model.args."
        )
    reads = ", ".join("model." + k for k in component.uses if k != "name")
    if cfg.name == "lapgan" and stray:
        raise GanError(
            f"{', '.join(stray)}: model=lapgan's levels are the paper's small MLP and conv nets, which read only "
            f"{reads}. Use model=dcgan or model=style for those options."
        )
    if cfg.name == "progan" and stray:
        raise GanError(
            f"{', '.join(stray)}: model=progan is the paper's network (equalized learning rate, pixel norm, minibatch std-dev, "
            f"no BatchNorm), which reads only {reads}. Use model=dcgan or model=style for those options."
        )
    grown = [f"model.{k}={cfg[k]}" for k in _GROWTH_KEYS if k in defaults and cfg[k] != defaults[k]]
    if grown and cfg.name != "progan" and component.target is None:
        raise GanError(
            f"{', '.join(grown)} sets how model=progan grows; model={cfg.name} does not grow. Use model=progan, or leave the key at its default."
        )


def check_model_options(cfg, spec: DataSpec) -> None:
    """Every `model.*` option of a built-in architecture, before it is built."""
    if cfg.d_norm not in D_NORMS:
        raise one_of("model.d_norm", cfg.d_norm, D_NORMS)
    for key in ("z_dim", "g_width", "d_width"):
        if cfg.name != "shift" and cfg[key] < 1:
            raise GanError(f"model.{key}={cfg[key]} must be a positive integer.")
    if not 0.0 <= cfg.dropout < 1.0:
        raise GanError(f"model.dropout={cfg.dropout} must be in [0, 1).")
    _check_choices(cfg)
    _check_combinations(cfg)
    if cfg.name == "lapgan":
        _check_lapgan(cfg)
    if cfg.name == "progan":
        _check_progan(cfg)
    if cfg.name == "shift":
        _check_shift(cfg)
        return
    _check_fits_data(cfg, spec)


def _check_choices(cfg) -> None:
    """Each choice key against its allowed values."""
    if cfg.cond not in CONDITIONINGS:
        raise one_of("model.cond", cfg.cond, (*CONDITIONINGS, "auto"))
    if cfg.g_norm not in G_NORMS:
        raise one_of("model.g_norm", cfg.g_norm, G_NORMS)
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


def _check_combinations(cfg) -> None:
    """Options that only some architectures have, or that rule each other out."""
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


def _check_shift(cfg) -> None:
    """model=shift is the fixed 1-D example: none of the variant options apply."""
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


def _check_fits_data(cfg, spec: DataSpec) -> None:
    """Options that must fit the data: labels for a conditional GAN, a feature-map side for attention."""
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
    if cfg.cond not in ("none", "concat"):
        raise GanError(
            f"model.cond={cfg.cond}: model=lapgan conditions every level on the class by concatenation (model.cond=concat, or auto), or not at all (none)."
        )
    if cfg.pack > 1:
        raise GanError(
            f"model.pack={cfg.pack}: model=lapgan's discriminators judge one pyramid level of one sample each; use model.pack=1."
        )


def _check_progan(cfg) -> None:
    if cfg.cond not in ("none", "projection"):
        raise GanError(
            f"model.cond={cfg.cond}: model=progan takes the class through a projection D and a class embedding appended to z "
            f"(model.cond=projection, or auto on labelled data) or is unconditional (model.cond=none, the paper's)."
        )
    check_growth_options(cfg.fade_steps, cfg.stable_steps)
