"""`plots=true`: the report's curves and sample grids as PNG files."""

from __future__ import annotations

import math
from pathlib import Path

from gan_cli.report.runs import LOSS_TAGS, Report, RunRow, read_curves


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def _legend(report: Report, row: RunRow) -> str:
    """The run and what sets it apart: '2: loss=ns optimizer.lr=1e-4'."""
    differs = " ".join(f"{k}={row.overrides[k]}" for k in report.varied if k in row.overrides)
    return f"{row.label}: {differs}" if differs else row.label


def write_plots(report: Report, folder: Path) -> list[Path]:
    """report_losses.png and report_scores.png (every run's curve in one panel per tag) and report_samples.png
    (each run's last sample grid, labelled)."""
    from gan_cli.plots import pyplot, save_figure

    plt = pyplot()
    written = []
    curves = {_legend(report, r): read_curves(r.path, LOSS_TAGS, prefix="metrics/") for r in report.runs}
    for name, tags in (
        ("losses", list(LOSS_TAGS)),
        ("scores", sorted({t for c in curves.values() for t in c if t.startswith("metrics/")})),
    ):
        tags = [t for t in tags if any(t in c for c in curves.values())]
        if not tags:
            continue
        cols = min(len(tags), 2)
        rows = math.ceil(len(tags) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
        for ax, tag in zip(axes.flat, tags):
            for label, c in curves.items():
                if tag in c:
                    ax.plot(*c[tag], label=label, linewidth=1.2)
            ax.set_title(tag)
            ax.set_xlabel("step")
        for ax in list(axes.flat)[len(tags) :]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7, loc="best")
        fig.tight_layout()
        written.append(save_figure(fig, folder / f"report_{name}.png"))
    grids = [(_legend(report, r), sorted((r.path / "samples").glob("step_*.png"))) for r in report.runs]
    grids = [(label, files[-1]) for label, files in grids if files]
    if grids:
        cols = min(len(grids), 4)
        rows = math.ceil(len(grids) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.5 * rows), squeeze=False)
        for ax, (label, file) in zip(axes.flat, grids):
            ax.imshow(plt.imread(str(file)), cmap="gray")
            ax.set_title(f"{label}\n{file.stem}", fontsize=8)
        for ax in axes.flat:
            ax.axis("off")
        fig.tight_layout()
        written.append(save_figure(fig, folder / "report_samples.png"))
    return written
