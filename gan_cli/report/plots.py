"""`plots=true`: the report's curves and sample grids as PNG files."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from gan_cli.metrics.scorer import direction_of
from gan_cli.report.output import direction_word
from gan_cli.report.runs import LOSS_TAGS, Report, RunRow, read_curves

SCORE_PREFIX = "metrics/"  # the TensorBoard tags of the scores during training


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def _legend(report: Report, row: RunRow) -> str:
    """The run and what sets it apart: '2: loss=ns optimizer.lr=1e-4'."""
    differs = " ".join(f"{k}={row.overrides[k]}" for k in report.varied if k in row.overrides)
    return f"{row.label}: {differs}" if differs else row.label


def panel_title(tag: str) -> str:
    """A curve's panel title: a score says which way is better ('fid5k_lenet (lower is better)'), a loss is its tag."""
    if not tag.startswith(SCORE_PREFIX):
        return tag
    name = tag[len(SCORE_PREFIX) :]
    return f"{name} ({direction_word(direction_of(name))})"


def _grid_shape(n: int, most: int) -> tuple[int, int]:
    cols = min(n, most)
    return math.ceil(n / cols), cols


def write_plots(report: Report, folder: Path) -> list[Path]:
    """report_losses.png and report_scores.png (every run's curve in one panel per tag, each panel with its legend)
    and report_samples.png (each run's last sample grid, labelled). Figures grow with their panels and use
    constrained layout, so titles and legends are never clipped or squeezed."""
    from gan_cli.plots import pyplot, save_figure

    plt = pyplot()
    written = []
    curves = {_legend(report, r): read_curves(r.path, LOSS_TAGS, prefix=SCORE_PREFIX) for r in report.runs}
    legend_size = 8 if len(curves) <= 6 else 7
    for name, tags in (
        ("losses", list(LOSS_TAGS)),
        ("scores", sorted({t for c in curves.values() for t in c if t.startswith(SCORE_PREFIX)})),
    ):
        tags = [t for t in tags if any(t in c for c in curves.values())]
        if not tags:
            continue
        rows, cols = _grid_shape(len(tags), 2)
        fig, axes = plt.subplots(
            rows, cols, figsize=(6.4 * cols, 4.2 * rows), squeeze=False, layout="constrained", dpi=110
        )
        for ax, tag in zip(axes.flat, tags):
            for label, c in curves.items():
                if tag in c:
                    ax.plot(*c[tag], label=label, linewidth=1.2)
            ax.set_title(panel_title(tag), fontsize=11)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=legend_size, loc="best", framealpha=0.8)  # in every panel: no colour to look up
        for ax in list(axes.flat)[len(tags) :]:
            ax.axis("off")
        written.append(save_figure(fig, folder / f"report_{name}.png"))
    grids = [(_legend(report, r), sorted((r.path / "samples").glob("step_*.png"))) for r in report.runs]
    grids = [(label, files[-1]) for label, files in grids if files]
    if grids:
        rows, cols = _grid_shape(len(grids), 3)
        fig, axes = plt.subplots(
            rows, cols, figsize=(4.8 * cols, 5.2 * rows), squeeze=False, layout="constrained", dpi=110
        )
        for ax, (label, file) in zip(axes.flat, grids):
            ax.imshow(plt.imread(str(file)), cmap="gray")
            ax.set_title("\n".join([*textwrap.wrap(label, 40), file.stem]), fontsize=10)
        for ax in axes.flat:
            ax.axis("off")
        written.append(save_figure(fig, folder / "report_samples.png"))
    return written
