"""`gan sample`: samples from any checkpoint, without the dataset or the training command.

The checkpoint carries the resolved config and the data's shape, which is all it takes to
rebuild the generator.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from gan_cli.checkpoint import run_dir_of
from gan_cli.data.toys import TOY_NAMES, make_toy
from gan_cli.errors import GanError, io_failure, one_of
from gan_cli.models import latent_layout, num_classes, sample_latent, truncate
from gan_cli.models.progan import Growing, downscale
from gan_cli.plots import image_grid, points_figure, save_figure, save_grid
from gan_cli.rng import seeded_global_rng
from gan_cli.runtime import load_generator, pick_device, render

OUT_KINDS = (".png", ".npy", ".pt")


# ---------------------------------------------------------------------------------------------
# sampling modes: each returns (z, labels or None, images per row)
# ---------------------------------------------------------------------------------------------
def _needs_conditional(G: torch.nn.Module, what: str) -> int:
    k = num_classes(G)
    if not k:
        raise GanError(
            f"{what} needs a class-conditional generator, and this checkpoint's is not. Train one with model.cond=concat|projection|acgan on a labelled dataset."
        )
    return k


def _labels(cfg, G: torch.nn.Module) -> Optional[torch.Tensor]:
    if cfg.labels is None:
        return None
    k = _needs_conditional(G, f"labels={list(cfg.labels)}")
    bad = [c for c in cfg.labels if not 0 <= c < k]
    if bad or not cfg.labels:
        raise GanError(
            f"labels={list(cfg.labels)}: every label must be a class index in 0..{k - 1} (and the list not empty)."
        )
    return torch.tensor(list(cfg.labels), dtype=torch.long)


def _grid(cfg, G, gen) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
    labels = _labels(cfg, G)
    n = len(labels) if labels is not None else cfg.n  # labels=[3,3,7] draws one sample per label
    return sample_latent(G, n, "cpu", gen), labels, cfg.nrow or max(1, int(math.sqrt(n)))


def _classes(cfg, G, gen) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
    """One row per class (Mirza & Osindero's MNIST figure); column j shares its z across rows, so only the class changes down a column."""
    k = _needs_conditional(G, "mode=classes")
    cols = cfg.nrow or 10
    z = sample_latent(G, cols, "cpu", gen).repeat(k, 1)
    return z, torch.arange(k).repeat_interleave(cols), cols


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: stays on the shell where Gaussian z's live, unlike a straight line through the origin's side."""
    omega = torch.arccos(torch.clamp(torch.dot(a / a.norm(), b / b.norm()), -1.0, 1.0))
    if omega.abs() < 1e-6:
        return torch.lerp(a, b, t.unsqueeze(1))
    t = t.unsqueeze(1)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def _seed_latents(G, seeds: list[int]) -> torch.Tensor:
    return torch.cat([sample_latent(G, 1, "cpu", torch.Generator().manual_seed(int(s))) for s in seeds])


def _one_label(cfg, G, n: int) -> Optional[torch.Tensor]:
    labels = _labels(cfg, G)
    if labels is None:
        return torch.zeros(n, dtype=torch.long) if num_classes(G) else None
    return labels[:1].repeat(n)


def _interp(cfg, G, gen) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
    """A row of frames from seed a to seed b (Radford et al.: smooth transitions mean G has not memorised)."""
    seeds = list(cfg.seeds) if cfg.seeds is not None else [cfg.seed, cfg.seed + 1]
    if len(seeds) != 2:
        raise GanError(f"mode=interp takes two seeds (seeds=[a,b]); got seeds={seeds}.")
    frames = cfg.nrow or 10
    if frames < 2:
        raise GanError(f"mode=interp needs nrow >= 2 frames; got nrow={frames}.")
    za, zb = _seed_latents(G, seeds)
    return slerp(za, zb, torch.linspace(0, 1, frames)), _one_label(cfg, G, frames), frames


def _arithmetic(cfg, G, gen) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
    """DCGAN's vector arithmetic: z(a) - z(b) + z(c), each concept the mean of three exemplar z's.

    Rows a, b, c: the three exemplars and their mean; last row: the result, then three
    variations with uniform noise of scale 0.25 added, as in the paper's figure.
    """
    seeds = list(cfg.seeds) if cfg.seeds is not None else []
    if len(seeds) != 9:
        raise GanError(
            f"mode=arithmetic takes nine seeds, three exemplars per concept: seeds=[a1,a2,a3,b1,b2,b3,c1,c2,c3] for z(a) - z(b) + z(c); got {len(seeds)}."
        )
    z = _seed_latents(G, seeds).view(3, 3, -1)
    means = z.mean(1)
    result = means[0] - means[1] + means[2]
    jitter = (torch.rand(3, result.numel(), generator=gen) * 2 - 1) * 0.25
    rows = [torch.cat([z[i], means[i : i + 1]]) for i in range(3)] + [torch.cat([result.unsqueeze(0), result + jitter])]
    return torch.cat(rows), _one_label(cfg, G, 16), 4


def _codes(cfg, G, gen) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
    """InfoGAN: one row per latent code, varied along the row (categories 0..K-1, or continuous -2..2), all else fixed."""
    layout = latent_layout(G)
    if not (layout.n_cat or layout.n_cont):
        raise GanError(
            "mode=codes needs an InfoGAN generator with latent codes; this checkpoint has none. Train one with model.info_cat=10 and/or model.info_cont=2 (or experiment=infogan)."
        )
    cols = cfg.nrow or max(10, layout.n_cat)
    base = sample_latent(G, 1, "cpu", gen)
    start = layout.n_noise
    if layout.n_cat:
        base[:, start : start + layout.n_cat] = 0
        base[:, start] = 1  # category 0
    base[:, start + layout.n_cat :] = 0
    rows = []
    if layout.n_cat:
        row = base.repeat(cols, 1)
        row[:, start : start + layout.n_cat] = F.one_hot(torch.arange(cols) % layout.n_cat, layout.n_cat).float()
        rows.append(row)
    for j in range(layout.n_cont):
        row = base.repeat(cols, 1)
        row[:, start + layout.n_cat + j] = torch.linspace(
            -2, 2, cols
        )  # beyond the training range [-1, 1], as in the paper
        rows.append(row)
    z = torch.cat(rows)
    return z, _one_label(cfg, G, len(z)), cols


def _rendered(
    latents: Callable[..., tuple[torch.Tensor, Optional[torch.Tensor], int]],
) -> Callable[..., tuple[torch.Tensor, int]]:
    """A mode that picks latents (and labels), as the mode every G can draw: G applied to them as they are."""

    def mode(cfg, G, gen, device: torch.device) -> tuple[torch.Tensor, int]:
        z, labels, nrow = latents(cfg, G, gen)
        with seeded_global_rng(cfg.seed, device):  # per-layer noise inputs (model=style), as generate() draws them
            return render(G, truncate(G, z, cfg.truncation), labels, device), nrow

    return mode


@torch.no_grad()
def _mix(cfg, G, gen, device: torch.device) -> tuple[torch.Tensor, int]:
    """StyleGAN's style-mixing figure: k fine-style sources across the top, k coarse-style sources down the left, and
    in row i, column j the image with the coarse styles (the layers below full resolution) of the one and the fine
    styles of the other. A k+1 by k+1 grid, k = nrow (default 5)."""
    if not hasattr(G, "mixed"):
        raise GanError(
            "mode=mix mixes the per-layer styles of a style-based generator; this checkpoint's G has none. Train one with model=style (model.style_mixing=0.9 trains it for this)."
        )
    k = cfg.nrow or 5
    z_coarse = truncate(G, sample_latent(G, k, "cpu", gen), cfg.truncation).to(device)
    z_fine = truncate(G, sample_latent(G, k, "cpu", gen), cfg.truncation).to(device)
    label = _one_label(cfg, G, k * k)
    y = label.to(device) if label is not None else None
    with seeded_global_rng(cfg.seed, device):  # per-layer noise inputs, as everywhere else
        fine = G(z_fine, y[:k] if y is not None else None).float().cpu()
        coarse = G(z_coarse, y[:k] if y is not None else None).float().cpu()
        cells = G.mixed(z_coarse.repeat_interleave(k, 0), z_fine.repeat(k, 1), y).float().cpu()
    corner = torch.full_like(fine[:1], -1.0)  # black: no source there
    rows = [torch.cat([corner, fine])] + [torch.cat([coarse[i : i + 1], cells[i * k : (i + 1) * k]]) for i in range(k)]
    return torch.cat(rows), k + 1


@torch.no_grad()
def _pyramid(cfg, G, gen, device: torch.device) -> tuple[torch.Tensor, int]:
    """LAPGAN: one row per sample (n of them, 8 at most), its image after each level from the coarsest to the final one,
    each shown at full size (nearest-neighbour), so the detail every level adds can be seen."""
    if not hasattr(G, "pyramid_outputs"):
        raise GanError(
            "mode=pyramid shows the levels of a Laplacian pyramid generator; this checkpoint's G has none. Train one with model=lapgan."
        )
    rows = min(cfg.n, 8)
    z = truncate(G, sample_latent(G, rows, "cpu", gen), cfg.truncation).to(device)
    label = _one_label(cfg, G, rows) if cfg.labels is not None else None
    outputs = G.pyramid_outputs(z, label.to(device) if label is not None else None)
    side = outputs[-1].shape[-1]
    levels = [F.interpolate(o.float(), size=side, mode="nearest").clamp(-1, 1).cpu() for o in outputs]
    return torch.stack(levels, 1).flatten(0, 1), len(levels)


# mode -> (cfg, G, generator, device) -> (images, images per row)
MODES = {
    **{
        name: _rendered(f)
        for name, f in (
            ("grid", _grid),
            ("classes", _classes),
            ("interp", _interp),
            ("arithmetic", _arithmetic),
            ("codes", _codes),
        )
    },
    "mix": _mix,
    "pyramid": _pyramid,
}


def check_options(cfg) -> None:
    """The options gan sample (and the Python API's Run.sample) refuses before loading anything."""
    if OmegaConf.is_missing(cfg, "ckpt"):
        raise GanError(
            "gan sample needs a checkpoint: pass ckpt=<run dir> (uses its checkpoints/last.pt) or ckpt=<file.pt>."
        )
    if cfg.n < 1:
        raise GanError(f"n={cfg.n} must be a positive number of samples.")
    if cfg.mode not in MODES:
        raise one_of("mode", cfg.mode, MODES)
    if cfg.nrow is not None and cfg.nrow < 1:
        raise GanError(f"nrow={cfg.nrow} must be a positive number of images per row.")


def draw(cfg, G: torch.nn.Module, device: torch.device) -> tuple[torch.Tensor, int]:
    """(the samples of cfg.mode, images per row): what gan sample writes, and what the Python API's Run.sample returns."""
    gen = torch.Generator().manual_seed(cfg.seed)
    x, nrow = MODES[cfg.mode](cfg, G, gen, device)
    if isinstance(G, Growing) and not cfg.upscale:  # a progressive G saved before its last stage: its own side
        x = downscale(x, G.side)
    return x, nrow


def sample(cfg) -> Path:
    check_options(cfg)
    device = pick_device(cfg.device)
    G, spec, ckpt, path = load_generator(cfg.ckpt, device, cfg.ema, cfg.allow_targets)
    name = f"sample_seed{cfg.seed}.png" if cfg.mode == "grid" else f"{cfg.mode}_seed{cfg.seed}.png"
    out = Path(cfg.out) if cfg.out else run_dir_of(path) / "samples" / name
    if out.suffix.lower() not in OUT_KINDS:
        raise GanError(
            f"out={str(out)!r} has an unknown file type. Allowed endings: {', '.join(OUT_KINDS)} (grid or plot, NumPy array, torch tensor)."
        )
    if cfg.mode != "grid" and not spec.is_image and out.suffix.lower() == ".png":
        raise GanError(
            f"mode={cfg.mode} draws an image grid, but dataset={spec.name} holds points. Use mode=grid, or out=<file>.npy for the raw samples."
        )
    _check_writable_file(out)  # before the generator runs: a bad out= costs nothing
    x, nrow = draw(cfg, G, device)
    suffix = out.suffix.lower()
    try:
        _write(out, suffix, x, nrow, spec, ckpt)
    except OSError as err:
        raise io_failure(
            err, f"Writing the samples to {str(out)!r}", "Pick another out= (a writable folder with free space)."
        ) from err
    size = f", {x.shape[-1]}x{x.shape[-2]} px" if spec.is_image else ""
    print(f"wrote {len(x)} samples ({spec.name}, step {ckpt['step']}, mode={cfg.mode}{size}) to {out}")
    return out


def _check_writable_file(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        existed = out.exists()
        with open(out, "ab"):  # append mode: an existing file is left as it is
            pass
        if not existed:
            out.unlink()
    except OSError as err:
        raise GanError(
            f"out={str(out)!r} cannot be written: {err.strerror or err}. Pick a path in a writable folder."
        ) from err


def _write(out: Path, suffix: str, x: torch.Tensor, nrow: int, spec, ckpt: dict) -> None:
    if suffix == ".npy":
        np.save(out, x.numpy())
    elif suffix == ".pt":
        torch.save(x, out)
    elif spec.is_image:
        save_grid(image_grid(x, nrow), out)
    else:
        real = None
        if spec.name in TOY_NAMES:  # toy data is synthetic: draw real points to compare against
            ds = ckpt["config"]["dataset"]
            real, _ = make_toy(spec.name, 2000, ds["std"] if ds["std"] is not None else 1.0, 0)
        save_figure(points_figure(x, real, title=f"{spec.name}: {len(x)} samples, step {ckpt['step']}"), out)
