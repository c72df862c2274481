"""The speed paths: equal math against the canonical loop, on-device batching, AMP, channels_last, compile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import TINY, only_run_dir, run_gan
from torch import nn

from bench.loops import Case, build_pair
from gan_cli.data import DataSpec, LoadedData, make_batcher
from gan_cli.data.batching import IndexStream
from gan_cli.losses import gradient_penalty
from gan_cli.training.speed import Precision
from gan_cli.training.tracking import SKIPPED, ScalarAccumulator

FP32 = ["train.amp=off", "train.compile=off", "train.channels_last=off"]
# the tiny DCGAN of helpers.TINY (model and data only: the bench sets its own batch and cadences)
TINY_DCGAN = [
    "model=dcgan",
    "dataset=mnist5k",
    "model.g_width=8",
    "model.d_width=8",
    "model.z_dim=16",
    "dataset.limit=256",
]
# a tiny WGAN-GP MLP on 512 ring8 points, for the speed paths' CLI runs
TINY_WGAN_GP = [
    "model=mlp",
    "experiment=wgan_gp",
    "dataset=ring8",
    "model.g_width=8",
    "model.d_width=8",
    "dataset.n=512",
    "train.batch_size=16",
]
EQUAL_MATH_CASES = [
    Case(
        "dcgan_ns",
        TINY_DCGAN,
        batch_size=32,
        speed=FP32,
    ),
    pytest.param(
        Case(
            "mlp_wgan_gp",
            [
                "model=mlp",
                "experiment=wgan_gp",
                "dataset=ring8",
                "model.g_width=16",
                "model.d_width=16",
                "dataset.n=1024",
            ],
            data="ring8",
            batch_size=32,
            speed=FP32,
        ),
        marks=pytest.mark.slow,  # 5 critic steps with the gradient penalty's double backward, in both loops
    ),
]


@pytest.mark.parametrize("case", EQUAL_MATH_CASES, ids=lambda c: c.name)
def test_fast_fp32_path_computes_the_same_losses_as_the_canonical_loop(case: Case) -> None:
    """Same seed, weights, batches and noise: the speed-up must not come from doing less work."""
    n = 256 if case.data == "mnist5k" else 1024
    stream = IndexStream(n, case.batch_size, seed=0)
    order = torch.cat(
        [stream.next_indices() for _ in range(40)]
    ).tolist()  # gan's batch order, fed to the baseline's DataLoader
    gan, baseline = build_pair(case, workers=0, sampler=order)
    assert gan.G_run is gan.G and not gan.plan.channels_last and gan.plan.amp is None
    torch.manual_seed(1)
    fast = [(float(s["loss/D"]), float(s["loss/G"])) for s in (gan.step() for _ in range(6))]
    torch.manual_seed(1)
    slow = [baseline.step() for _ in range(6)]
    assert [v for pair in fast for v in pair] == pytest.approx([v for pair in slow for v in pair], rel=1e-4, abs=1e-5)
    assert len({d for d, _ in fast}) == len(fast)  # the losses move: the networks really train


def test_on_device_batching_gives_every_sample_once_per_epoch() -> None:
    n, batch = 50, 8  # batches straddle epoch boundaries
    data = LoadedData(DataSpec("ids", (1,), 0), x=torch.arange(n, dtype=torch.float32).unsqueeze(1))
    batcher = make_batcher(data, batch, torch.device("cpu"), seed=3, num_workers=0)
    seen = torch.cat([batcher.next()[0].squeeze(1) for _ in range(3 * n // batch)]).long()
    epochs = seen[: (len(seen) // n) * n].view(-1, n)
    assert len(epochs) == 2
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(n))
    assert not torch.equal(epochs[0], epochs[1])  # a fresh order each epoch


def test_data_kept_on_host_gives_the_same_batches() -> None:
    data = LoadedData(DataSpec("ids", (1,), 0), x=torch.arange(30.0).unsqueeze(1))
    on = make_batcher(data, 7, torch.device("cpu"), 0, 0, on_device=True)
    off = make_batcher(data, 7, torch.device("cpu"), 0, 0, on_device=False)
    for _ in range(6):
        assert torch.equal(on.next()[0], off.next()[0])


def test_fp16_gradient_penalty_follows_the_amp_recipe() -> None:
    """Scaled backward through D, unscaled input gradient: the penalty equals the fp32 one (to fp16 precision)."""
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    real, fake = torch.randn(32, 2), torch.randn(32, 2)
    torch.manual_seed(1)
    exact = gradient_penalty(lambda x: D(x).squeeze(1), real, fake)
    amp = Precision(torch.float16, torch.device("cpu"), init_scale=2.0**12)  # a scale the scaler would settle on
    torch.manual_seed(1)
    with amp.autocast():
        mixed = gradient_penalty(amp.penalty_fn(lambda x: D(x).squeeze(1)), real, fake)
    assert float(mixed.detach()) == pytest.approx(float(exact.detach()), rel=2e-2)
    weight = D[0].weight
    (exact_grad,) = torch.autograd.grad(exact, weight)
    (mixed_grad,) = torch.autograd.grad(mixed, weight)  # double backward through the scaled graph
    assert torch.allclose(mixed_grad, exact_grad, rtol=5e-2, atol=1e-3)


def test_steps_skipped_by_the_loss_scaler_count_neither_in_means_nor_as_divergence() -> None:
    acc = ScalarAccumulator()
    acc.add(1, {"loss/D": torch.tensor(float("inf")), SKIPPED: torch.tensor(1.0)})
    acc.add(2, {"loss/D": torch.tensor(2.0), SKIPPED: torch.tensor(0.0)})
    acc.add(3, {"loss/D": torch.tensor(4.0), SKIPPED: torch.tensor(0.0)})
    means, bad = acc.read()
    assert bad == {}
    assert means == {"loss/D": 3.0, SKIPPED: pytest.approx(1 / 3)}
    acc.add(4, {"loss/D": torch.tensor(float("nan")), SKIPPED: torch.tensor(1.0)})
    assert acc.read() == ({SKIPPED: 1.0}, {})  # a window of skipped steps has nothing to show but that
    acc.add(5, {"loss/D": torch.tensor(float("nan")), SKIPPED: torch.tensor(0.0)})
    assert acc.read()[1] == {"loss/D": 5}  # a NaN in a step that was applied is divergence


@pytest.mark.slow
def test_amp_and_channels_last_train_through_the_cli(workdir: Path) -> None:
    run_gan(
        "train",
        "train.steps=3",
        *TINY,
        "train.amp=bf16",
        "train.channels_last=on",
        "train.data_on_device=off",
        cwd=workdir,
        check=True,
    )
    log = (only_run_dir(workdir) / "train.log").read_text()
    assert "amp=bf16 channels_last=True compile=False data_on_device=False" in log
    assert "step 3/3" in log


@pytest.mark.slow
def test_fp16_wgan_gp_trains_through_the_cli(workdir: Path) -> None:
    proc = run_gan(
        "train", "train.steps=4", "train.log_every=2", "train.amp=fp16", *TINY_WGAN_GP, cwd=workdir, check=True
    )
    assert "step 4/4" in proc.stdout


@pytest.mark.slow
def test_compile_trains_through_the_cli(workdir: Path) -> None:
    """torch.compile of G and D on a tiny model; the gradient penalty's double backward runs eagerly."""
    run_gan("train", "train.steps=3", "train.log_every=3", "train.compile=on", *TINY_WGAN_GP, cwd=workdir, check=True)
    assert "compile=True" in (only_run_dir(workdir) / "train.log").read_text()


@pytest.mark.parametrize("override, named", [("train.amp=fp8", "fp8"), ("train.compile=maybe", "maybe")])
def test_bad_speed_option_is_a_clear_error(workdir: Path, override: str, named: str) -> None:
    proc = run_gan("train", "train.steps=1", *TINY, override, cwd=workdir)
    assert proc.returncode == 2
    assert (
        named in proc.stderr and "expected one of [" in proc.stderr and "Traceback" not in proc.stderr
    )  # the schema's Enum lists them


def test_benchmark_races_both_loops_and_writes_a_table() -> None:
    """bench/bench.py's race on a tiny case: both loops train and the table reports images/s and their ratio."""
    from bench.bench import race, table

    case = Case(
        "tiny",
        TINY_DCGAN,
        batch_size=16,
        speed=FP32,
    )
    row = race(case, rounds=2, chunk=1, warmup=1)
    assert row["gan_ips"] > 0 and row["base_ips"] > 0
    assert row["ratio"] == pytest.approx(row["gan_ips"] / row["base_ips"])
    assert row["flops_per_step"] > 0
    assert 1.0 < row["flop_ratio"] < 1.5  # the baseline also computes D's weight gradients in G's step, gan does not
    lines = table([row], {}, None)
    assert lines[2].startswith("| tiny |") and f"{row['ratio']:.2f}x" in lines[2]
