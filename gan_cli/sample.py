"""`gan sample`: samples from any checkpoint, without the dataset or the training command.

The checkpoint carries the resolved config and the data's shape, which is all it takes to
rebuild the generator.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torchvision.utils import save_image

from gan_cli.checkpoint import load_checkpoint, run_dir_of
from gan_cli.data import DataSpec
from gan_cli.data.toys import TOY_NAMES, make_toy
from gan_cli.errors import GanError
from gan_cli.models import build_models
from gan_cli.plots import image_grid, points_figure, save_figure
from gan_cli.train import _load_state, pick_device

OUT_KINDS = (".png", ".npy", ".pt")


def load_generator(ckpt_target: str, device: torch.device) -> tuple[torch.nn.Module, DataSpec, dict, Path]:
    """(G in eval mode, data spec, checkpoint dict, checkpoint path)."""
    ckpt, path = load_checkpoint(ckpt_target, map_location=device)
    spec = DataSpec.from_dict(ckpt["data_spec"])
    G, _ = build_models(OmegaConf.create(ckpt["config"]["model"]), spec)
    _load_state(G, ckpt["models"]["G"], path)
    return G.to(device).eval(), spec, ckpt, path


@torch.no_grad()
def generate(G: torch.nn.Module, n: int, seed: int, device: torch.device, batch: int = 1024) -> torch.Tensor:
    """n samples from noise drawn with `seed` (the same seed gives the same samples), in chunks to bound memory."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen)
    return torch.cat([G(z[i : i + batch].to(device)).float().cpu() for i in range(0, n, batch)])


def sample(cfg) -> Path:
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise GanError("gan sample needs a checkpoint: pass ckpt=<run dir> (uses its checkpoints/last.pt) or ckpt=<file.pt>.")
    if cfg.n < 1:
        raise GanError(f"n={cfg.n} must be a positive number of samples.")
    device = pick_device(cfg.device)
    G, spec, ckpt, path = load_generator(cfg.ckpt, device)
    out = Path(cfg.out) if cfg.out else run_dir_of(path) / "samples" / f"sample_seed{cfg.seed}.png"
    if out.suffix.lower() not in OUT_KINDS:
        raise GanError(f"out={str(out)!r} has an unknown file type. Allowed endings: {', '.join(OUT_KINDS)} (grid or plot, NumPy array, torch tensor).")
    x = generate(G, cfg.n, cfg.seed, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix == ".npy":
        np.save(out, x.numpy())
    elif suffix == ".pt":
        torch.save(x, out)
    elif spec.is_image:
        save_image(image_grid(x, cfg.nrow or max(1, int(math.sqrt(cfg.n)))), out)
    else:
        real = None
        if spec.name in TOY_NAMES:  # toy data is synthetic: draw real points to compare against
            ds = ckpt["config"]["dataset"]
            real, _ = make_toy(spec.name, 2000, ds["std"] if ds["std"] is not None else 1.0, 0)
        save_figure(points_figure(x, real, title=f"{spec.name}: {cfg.n} samples, step {ckpt['step']}"), out)
    print(f"wrote {cfg.n} samples ({spec.name}, step {ckpt['step']}) to {out}")
    return out
