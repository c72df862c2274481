"""Sizes a run cannot hold, said before anything is allocated for long: a model.z_dim whose latent layer alone
outgrows the device, and the width behind a build that ran out of memory (counted on the meta device, which
allocates nothing and draws no random numbers)."""

from __future__ import annotations

import os

import torch
from omegaconf import DictConfig, OmegaConf

from gan_cli.config import base_values
from gan_cli.data import DataSpec
from gan_cli.errors import GanError
from gan_cli.models import build_models, model_label


def weights_on_meta(model: DictConfig, spec: DataSpec) -> tuple[int, int]:
    """(G's weights, D's weights) of `model` on `spec`, built on the meta device: no memory taken, no random number drawn."""
    with torch.device("meta"):
        G, D = build_models(model, spec, base_values("model"))
    return sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())


def models_too_large(model: DictConfig, spec: DataSpec, exc: BaseException) -> GanError:
    """The allocation that failed while building G and D, said as the width that asked for it: the network with the
    more weights (counted by building both again on the meta device, which allocates nothing) and its width option."""
    try:
        counts = dict(zip(("G", "D"), weights_on_meta(model, spec)))
    except Exception:  # a builder that cannot run on the meta device: say what torch said
        counts = {}
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split("DefaultCPUAllocator: ")[-1][:160]
    if not counts or model.get("_target_"):
        return GanError(f"Building {model_label(model)} ran out of memory ({first}): lower its sizes.")
    net = max(counts, key=lambda k: counts[k])
    key = "g_width" if net == "G" else "d_width"
    default = base_values("model").get(key)
    return GanError(
        f"model.{key}={model.get(key)} makes {'the generator' if net == 'G' else 'the discriminator'} of "
        f"{model_label(model)} too large to build: about {counts[net]:,} weights ({counts[net] * 4 / 1e9:,.1f} GB in "
        f"float32, and training needs about 4 times that for gradients and Adam's two moments), more than this device "
        f"has ({first}). Lower model.{key} (the default is {default}); the weights grow with its square."
    )


USUAL_Z_DIM = 1024  # GANs draw 100 (DCGAN) to 512 (StyleGAN) latent dimensions; up to here none is refused
BYTES_PER_TRAINED_WEIGHT = 16  # the weight, its gradient and Adam's two moments, float32 each


def check_latent_size(cfg: DictConfig, spec: DataSpec, device: torch.device) -> None:
    """Refuse a model.z_dim whose latent layer and latent vectors alone cannot fit this device's memory, before
    building anything (a typo of 10^8 would allocate for minutes, or end in an allocator's traceback). What each
    latent dimension costs: the weights it adds to a built-in G (counted by building G on the meta device, which
    takes no memory and draws no random numbers, at z_dim 1 and 2), trained, plus one float in each of the
    train.n_samples fixed-noise vectors and the train.batch_size vectors of a step."""
    model = cfg.model
    z_dim = model.get("z_dim")
    if not isinstance(z_dim, int) or z_dim <= USUAL_Z_DIM or model.get("_target_") or model.name == "shift":
        return
    try:
        counts = [weights_on_meta(OmegaConf.merge(model, {"z_dim": z}), spec)[0] for z in (1, 2)]
    except GanError:
        return  # another option is wrong: the real build says which
    per_dim = counts[1] - counts[0]
    if device.type == "cuda":
        memory = torch.cuda.get_device_properties(device).total_memory
        where = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        memory, where = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine's RAM"
    vectors = int(cfg.train.n_samples) + int(cfg.train.batch_size)
    each = per_dim * BYTES_PER_TRAINED_WEIGHT + vectors * 4  # bytes per latent dimension
    if z_dim * each <= memory:
        return
    raise GanError(
        f"model.z_dim={z_dim:,} needs about {z_dim * each / 1e9:,.0f} GB for G's latent layer and the latent vectors "
        f"alone ({per_dim:,} weights per latent dimension in model={model.name} on {spec.name}, each trained with a "
        f"gradient and Adam's two moments: {BYTES_PER_TRAINED_WEIGHT} bytes; and a float in each of the {vectors:,} "
        f"vectors of train.n_samples and train.batch_size), more than the {memory / 1e9:,.0f} GB of {where}. "
        f"model.z_dim up to {memory // each:,} fits there; GANs use 100 (DCGAN) to 512 (StyleGAN)."
    )
