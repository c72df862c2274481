"""The 32 x 32 RGB path end to end, on generated colour images (no colour dataset ships offline): an image_folder
of coloured shapes trains, samples and evaluates, under the default settings and the experiment=cifar10 preset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SHAPES, TINY, compose_train, run_gan, write_shapes_folder

COLOUR = [*TINY, "dataset=image_folder", "dataset.image_size=32", "dataset.limit=null"]


@pytest.mark.slow
def test_a_colour_folder_trains_samples_and_evaluates(tmp_path: Path) -> None:
    folder = write_shapes_folder(tmp_path / "shapes")
    run = tmp_path / "run"
    out = run_gan("train", *COLOUR, f"dataset.path={folder}", "train.steps=4", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["data_spec"]["shape"] == [3, 32, 32] and ckpt["data_spec"]["num_classes"] == len(SHAPES)
    run_gan("sample", f"ckpt={run}", "n=6", f"out={tmp_path / 'x.npy'}", cwd=tmp_path, check=True)
    images = np.load(tmp_path / "x.npy")
    assert images.shape == (6, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    assert np.abs(images[:, 0] - images[:, 1]).mean() > 1e-3  # three channels of their own, not one grey copied
    run_gan("eval", f"ckpt={run}", "n=48", "metrics=[fid,classes]", cwd=tmp_path, check=True)
    scores = json.loads((run / "metrics.json").read_text())["scores"]
    assert np.isfinite(scores["fid48_lenet"]) and 1 <= scores["classes48_lenet"] <= len(SHAPES)


def test_the_cifar10_preset_states_the_literature_settings() -> None:
    cfg = compose_train("experiment=cifar10")
    assert cfg.dataset.name == "cifar10" and cfg.loss.objective == "hinge" and cfg.model.d_norm == "spectral"
    assert cfg.model.ema > 0 and list(cfg.train.augment) and cfg.train.steps >= 20000


@pytest.mark.slow
def test_the_cifar10_preset_trains_on_a_colour_folder(tmp_path: Path) -> None:
    """The preset's model, loss and optimizer on 32 x 32 RGB images: the settings a user with CIFAR-10 runs, for two steps."""
    folder = write_shapes_folder(tmp_path / "shapes", per_class=8)
    run = tmp_path / "run"
    out = run_gan(
        "train",
        "experiment=cifar10",
        *COLOUR,
        f"dataset.path={folder}",
        "train.steps=2",
        "eval.every=0",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert (run / "checkpoints" / "last.pt").is_file()
