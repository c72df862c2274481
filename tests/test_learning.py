"""It learns, not only runs: the theory of the classic papers, checked on toys in seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import GAUSS1D, compose_train, gan_env, load_last, only_run_dir, run_gan

from gan_cli.data import load_dataset
from gan_cli.data.batching import TensorBatcher
from gan_cli.data.toys import mode_centers
from gan_cli.losses import build_loss
from gan_cli.metrics.toy import mode_coverage
from gan_cli.models import build_models
from gan_cli.models.shift import LogisticDiscriminator, ShiftGenerator
from gan_cli.optimizers import build_optimizers
from gan_cli.runtime import seed_everything
from gan_cli.training.step import train_step


@pytest.mark.slow
def test_gauss1d_theta_goes_to_7(workdir: Path) -> None:
    """G(z) = z + theta against N(7, 1): the game's equilibrium is theta = 7, where D = 1/2 everywhere."""
    run_gan(
        "train",
        *GAUSS1D,
        "loss=ns",
        "optimizer.lr=0.02",
        "train.steps=2000",
        "train.log_every=500",
        "train.sample_every=2000",
        cwd=workdir,
        check=True,
    )
    ckpt = load_last(only_run_dir(workdir))
    theta = ckpt["models"]["G"]["theta"].item()
    assert abs(theta - 7.0) < 0.5, theta
    slope = ckpt["models"]["D"]["linear.weight"].item()
    assert abs(slope) < 0.3, "at equilibrium D(x) is nearly flat at 1/2"


@pytest.mark.slow
def test_fixed_generator_d_reaches_the_analytic_optimum() -> None:
    """With G frozen at N(6, 1) and data N(7, 1), D* = p_data / (p_data + p_g) = sigmoid(x - 6.5)."""
    torch.manual_seed(0)
    cfg = compose_train(*GAUSS1D, "loss=ns", "optimizer.lr=0.05", "optimizer.lr_g=0")
    data = load_dataset(cfg.dataset, seed=0)
    G, D = ShiftGenerator(data.spec, init=6.0), LogisticDiscriminator(data.spec)
    opt_g, opt_d = build_optimizers(cfg.optimizer, G, D)
    batcher = TensorBatcher(data, 256, torch.device("cpu"), 0)
    for _ in range(1500):
        train_step(G, D, build_loss(cfg.loss), opt_g, opt_d, batcher, torch.device("cpu"))
    assert G.theta.item() == 6.0, "lr_g=0 freezes G"
    xs = torch.linspace(3, 10, 141).unsqueeze(1)
    with torch.no_grad():
        learned = torch.sigmoid(D(xs))
    p_data = torch.exp(-0.5 * (xs - 7) ** 2)
    p_g = torch.exp(-0.5 * (xs - 6) ** 2)
    optimum = (p_data / (p_data + p_g)).squeeze(1)
    assert (learned - optimum).abs().max().item() < 0.05


@pytest.mark.slow
def test_wgan_gp_covers_the_ring() -> None:
    """WGAN-GP with a small MLP finds (at least 6 of) the 8 modes of ring8 in 500 generator steps (7 at seed 0; 8 after 800)."""
    cfg = compose_train(
        "model=mlp",
        "dataset=ring8",
        "experiment=wgan_gp",
        "model.g_width=64",
        "model.d_width=64",
        "model.z_dim=8",
        "model.dropout=0",
        "optimizer.lr=5e-4",
        "train.batch_size=256",
    )
    seed_everything(0)
    data = load_dataset(cfg.dataset, seed=0)
    G, D = build_models(cfg.model, data.spec)
    opt_g, opt_d = build_optimizers(cfg.optimizer, G, D)
    loss, batcher = build_loss(cfg.loss), TensorBatcher(data, 256, torch.device("cpu"), 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add sync overhead, badly so on a busy machine
    try:
        for _ in range(500):
            train_step(G, D, loss, opt_g, opt_d, batcher, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        samples = G(torch.randn(2500, cfg.model.z_dim))
    coverage = mode_coverage(samples, mode_centers("ring8"), std=0.02)
    assert coverage.modes_covered >= 6, coverage


@pytest.mark.slow
@pytest.mark.parametrize("preset,modes,steps", [("ring8", 8, 4000)])
def test_toy_preset_covers_every_mode_with_high_quality_samples(tmp_path, preset: str, modes: int, steps: int) -> None:
    """`experiment=ring8` exactly as a user runs it (seed 0), on one thread so the rest of the suite may share the
    two cores: every mode, at least 95 % of 2,500 samples within 3 std of a mode (the README's per-seed table has
    the exact figures, 99 % and more), and modes neither collapsed to points nor bled into each other (spread
    within [0.2, 1.5] of the data's) shared out evenly. `grid25` (89-100 s on two threads) is left to the README's
    table: in CI's time budget one preset proves the path."""
    env = {**gan_env(), "OMP_NUM_THREADS": "1"}
    run = tmp_path / preset
    proc = subprocess.run(
        [sys.executable, "-m", "gan_cli", "train", f"experiment={preset}", "seed=0", f"hydra.run.dir={run}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == steps
    assert last["modes2.5k"] == modes and last["hq2.5k"] >= 95.0, last
    assert 0.2 <= last["spread2.5k"] <= 1.5 and last["mode_kl2.5k"] < 0.05, last
