"""The variants learn what they claim, on ring8 where the answer is countable (a few seconds each on CPU)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import only_run_dir, run_gan
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan_cli.config import command_defaults
from gan_cli.data.toys import mode_centers
from gan_cli.sample import sample

RING = [
    "model=mlp",
    "dataset=ring8",
    "model.g_width=32",
    "model.d_width=32",
    "model.z_dim=4",
    "model.dropout=0",
    "train.steps=400",
    "train.batch_size=128",
    "optimizer.lr=1e-3",
    "train.log_every=50",
    "train.sample_every=400",
    "train.ckpt_every=400",
    "train.num_workers=0",
]


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny MLPs run fastest on one thread; two OpenMP threads on a busy 2-core machine were 10x slower."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.slow
def test_every_conditioning_puts_each_label_on_its_own_mode(workdir: Path, one_thread: None) -> None:
    """ring8's label is the mode index: a conditional G must put label k's samples on mode k (chance: 1/8)."""
    run_gan("train", "-m", "model.cond=concat,projection,acgan", *RING, cwd=workdir, check=True)
    runs = sorted(p for p in (workdir / "multirun").glob("*/*/*") if p.is_dir())
    assert len(runs) == 3
    labels = torch.arange(8).repeat_interleave(50)
    for run in runs:
        out = run / "s.npy"
        sample(
            OmegaConf.merge(
                command_defaults("sample"),
                {"ckpt": str(run), "out": str(out), "labels": labels.tolist(), "device": "cpu"},
            )
        )
        nearest = torch.cdist(torch.from_numpy(np.load(out)), mode_centers("ring8")).argmin(1)
        hit = (nearest == labels).float().mean().item()
        assert hit > 0.9, (run, hit)


@pytest.mark.slow
def test_infogan_mutual_information_grows_towards_its_maximum(workdir: Path, one_thread: None) -> None:
    """An 8-way code on 8 modes: the bound L_I starts near 0 and climbs towards log 8 as Q learns to read the code."""
    run_gan("train", "model.info_cat=8", *RING, cwd=workdir, check=True)
    acc = EventAccumulator(str(only_run_dir(workdir)), size_guidance={"scalars": 0})
    acc.Reload()
    values = [e.value for e in acc.Scalars("estimate/mutual_info")]
    assert values[0] < 0.2
    assert 0.5 < values[-1] <= math.log(8) + 0.05
