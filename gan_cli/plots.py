"""Pictures of samples: image grids (torchvision), and matplotlib figures for toy data.

Both are imported on first use. torchvision pulls in torch._dynamo (about 2.5 s on a small CPU), which
`gan sample` and `gan eval` of toy data, and every command that stops on bad input, need not pay:
`gan sample` of a toy run takes 2.4-3.4 s instead of 4.2-4.8 s."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import torch

from gan_cli.files import replace_atomically


def pyplot():
    """matplotlib, imported on first use: it costs half a second, and image runs never plot."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, safe in workers and CI
    import matplotlib.pyplot as plt

    return plt


def image_grid(images: torch.Tensor, nrow: Optional[int] = None) -> torch.Tensor:
    """A C x H x W grid in [0, 1] from images in [-1, 1]."""
    from torchvision.utils import make_grid

    nrow = nrow or max(1, int(math.sqrt(len(images))))
    return make_grid(images.detach().float().cpu(), nrow=nrow, normalize=True, value_range=(-1, 1), padding=2)


def points_figure(
    fake: torch.Tensor, real: Optional[torch.Tensor] = None, d_fn: Optional[Callable] = None, title: str = ""
):
    """2-D: generated points over real ones. 1-D: histograms of both, and D(x) when given."""
    fake = fake.detach().float().cpu()
    fig, ax = pyplot().subplots(figsize=(5, 5) if fake.shape[1] == 2 else (6, 4), dpi=100)
    if fake.shape[1] >= 2:
        if real is not None:
            ax.scatter(real[:, 0], real[:, 1], s=4, c="tab:blue", alpha=0.3, label="real")
        ax.scatter(fake[:, 0], fake[:, 1], s=4, c="tab:orange", alpha=0.6, label="generated")
        ax.set_aspect("equal")
    else:
        lo = min(fake.min().item(), real.min().item() if real is not None else fake.min().item()) - 1
        hi = max(fake.max().item(), real.max().item() if real is not None else fake.max().item()) + 1
        bins = torch.linspace(lo, hi, 60).numpy()
        if real is not None:
            ax.hist(real[:, 0].numpy(), bins=bins, density=True, alpha=0.4, color="tab:blue", label="real")
        ax.hist(fake[:, 0].numpy(), bins=bins, density=True, alpha=0.5, color="tab:orange", label="generated")
        if d_fn is not None:
            xs = torch.linspace(lo, hi, 200).unsqueeze(1)
            ax.plot(xs[:, 0].numpy(), d_fn(xs).cpu().numpy(), color="black", label="D(x)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path) -> Path:
    """The figure as a PNG at `path`, by temp file and rename: a symlink planted at `path` (a run directory may come
    from anywhere) is replaced, never written through into the file it points to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        replace_atomically(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png"), binary=True,
                           mode=0o644)  # fmt: skip
    finally:
        pyplot().close(fig)
    return path


def save_grid(grid: torch.Tensor, path: Path) -> Path:
    """An image grid (C x H x W in [0, 1], from `image_grid`) as an image file at `path`, by temp file and rename as
    `save_figure` writes: never through a symlink at `path`."""
    from PIL import Image
    from torchvision.utils import save_image

    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")  # a file object has no name to go by
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda f: save_image(grid, f, format=image_format), binary=True, mode=0o644)
    return path


def dstar_figure(xs: torch.Tensor, d: torch.Tensor, d_star: torch.Tensor, title: str = ""):
    """The learned D(x) against the optimal D*(x) = p_data / (p_data + p_g) of the 1-D example."""
    fig, ax = pyplot().subplots(figsize=(6, 4), dpi=100)
    ax.plot(xs.numpy(), d_star.numpy(), color="black", linestyle="--", label="D*(x) = p_data / (p_data + p_g)")
    ax.plot(xs.numpy(), d.numpy(), color="tab:red", label="learned D(x)")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
