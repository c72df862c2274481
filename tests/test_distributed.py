"""One run on several processes (gloo on the CPU): the same weights as one process, resume across world sizes,
Ctrl-C/SIGTERM to the launcher, torchrun, and Hydra's submitit launcher.

The WGAN-GP equivalence runs use SGD: Adam's first steps move a weight by about +-lr whatever its gradient's size
(m / sqrt(v) = g / |g|), so a weight whose gradient is at the level of float rounding (the sums of 2 x B/2 and of
1 x B differ there) moves by +-lr with a sign that rounding picks. Under WGAN-GP that is 3.6e-4 after one step and
1.7e-3 after five between 1 and 2 processes, and 1.7e-14 when both run in float64: rounding amplified, no other
difference (docs/distributed.md). With SGD the two runs agree to ~1e-9 after two steps (ten critic steps with the
gradient penalty's double backward); with Adam and the non-saturating loss (the MLP at its defaults, dropout
included) to ~1e-7."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import assert_same, gan_env, load_last, run_gan, train_until_step

pytestmark = pytest.mark.slow
SAME_RUN = [
    "model=mlp",
    "model.dropout=0",
    "dataset=ring8",
    "loss=wgan_gp",
    "optimizer=sgd",
    "train.log_every=1",
    "train.threads=1",
    "train.batch_size=64",
]


def assert_same_weights(a: Path, b: Path) -> None:
    """G and D of the two runs' last checkpoints agree to within 1e-6 (float sums in another order)."""
    wa, wb = load_last(a)["models"], load_last(b)["models"]
    assert_same({n: wa[n] for n in ("G", "D")}, {n: wb[n] for n in ("G", "D")}, f"{a.name} vs {b.name}", atol=1e-6)


def train(cwd: Path, run: str, *args: str, own_process: bool = True) -> Path:
    proc = run_gan("train", *SAME_RUN, f"hydra.run.dir={cwd / run}", *args, cwd=cwd, own_process=own_process)
    assert proc.returncode == 0, proc.stderr
    return cwd / run


def test_two_processes_train_the_one_process_run_and_resume_on_either_world_size(workdir: Path) -> None:
    one = train(workdir, "one", "train.steps=2")
    two = train(workdir, "two", "train.steps=2", "dist.nproc_per_node=2")
    # the gradient of the global batch (data split, z drawn once and cut, the penalty's interpolation points too),
    # averaged by DDP over the ranks, with the penalty's double backward through D's DDP wrapper
    assert_same_weights(one, two)
    log = (two / "train.log").read_text()
    assert "distributed: 2 processes (gloo), 32 samples per process" in log
    assert json.loads((two / "status.json").read_text())["status"] == "finished"
    assert (
        torch.load(two / "checkpoints" / "last.pt", weights_only=True)["batches_done"] == 10
    )  # global batches: 2 steps x 5 critic steps
    assert log.count("step 2/2 ") == 1  # one train.log, written by rank 0 alone

    # GAN training amplifies float noise from step to step (here 1e-9 after two steps, 5e-7 after four, 1e-5 after five),
    # so the runs stay short; a wrong data position or random stream after a resume would differ by 1e-3 at once
    straight = train(workdir, "straight", "train.steps=3")
    assert (
        run_gan(
            "train", f"resume={one}", "train.steps=3", "dist.nproc_per_node=2", cwd=workdir, own_process=True
        ).returncode
        == 0
    )  # 1 -> 2
    assert (
        run_gan(
            "train", f"resume={two}", "train.steps=3", "dist.nproc_per_node=1", cwd=workdir, own_process=True
        ).returncode
        == 0
    )  # 2 -> 1
    assert_same_weights(straight, one)
    assert_same_weights(straight, two)


@pytest.mark.parametrize("d_pass", ["separate", "joint"])
def test_two_processes_train_the_one_process_run_with_adam_and_the_mlps_dropout(workdir: Path, d_pass: str) -> None:
    """The MLP at its defaults (Adam, the non-saturating loss, dropout 0.3 in D): the masks are per-sample draws of
    the global batch, like z, so each rank drops what one process drops for its samples (joint: for the real and
    the fake half alike). Rank-sized masks put the runs 2e-3 apart after five steps; now they agree to ~1e-7."""
    runs = []
    for world in (1, 2):
        run = workdir / f"{d_pass}_{world}"
        args = ["model=mlp", "dataset=ring8", "train.batch_size=64", "train.steps=3", "train.threads=1"]
        proc = run_gan(
            "train",
            *args,
            f"train.d_pass={d_pass}",
            f"dist.nproc_per_node={world}",
            f"hydra.run.dir={run}",
            cwd=workdir,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(run)
    assert load_last(runs[0])["config"]["model"]["dropout"] == 0.3
    assert_same_weights(*runs)


def test_torchrun_ranks_agree_on_one_run_directory(workdir: Path) -> None:
    env = gan_env()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "-m",
            "gan_cli",
            "train",
            *SAME_RUN,
            "train.steps=2",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [p for p in (workdir / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs  # both processes took rank 0's name (a time and a pid would differ)
    assert (runs[0] / ".hydra" / "config.yaml").is_file() and (runs[0] / "checkpoints" / "last.pt").is_file()
    assert "distributed: 2 processes" in (runs[0] / "train.log").read_text()


def test_sigterm_to_the_launcher_saves_once_and_exits_130(workdir: Path) -> None:
    run = workdir / "long"
    proc = train_until_step(
        5,
        [*SAME_RUN, "train.steps=100000", "train.log_every=5", "dist.nproc_per_node=2", f"hydra.run.dir={run}"],
        workdir,
    )
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-2000:]
    assert "SIGTERM received: stopped at step" in err and f"gan train resume={run}" in err
    status = json.loads((run / "status.json").read_text())
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert status["status"] == "interrupted" and ckpt["step"] == status["step"] >= 5


def test_a_batch_the_processes_cannot_share_and_sync_bn_on_the_cpu_are_refused_before_a_run_directory(
    workdir: Path,
) -> None:
    odd = run_gan("train", "model=mlp", "dataset=ring8", "train.batch_size=63", "dist.nproc_per_node=2", cwd=workdir)
    assert odd.returncode == 2 and "train.batch_size=63 is the global batch" in odd.stderr
    assert not (workdir / "outputs").exists()
    bn = run_gan(
        "train",
        "model=dcgan",
        "train.steps=1",
        "dist.nproc_per_node=2",
        "dist.sync_bn=on",
        "train.threads=1",
        cwd=workdir,
    )
    assert bn.returncode == 2 and "SyncBatchNorm runs on GPUs only" in bn.stderr


def test_submitit_local_runs_a_sweep_and_a_distributed_job(workdir: Path) -> None:
    sweep = run_gan(
        "train",
        "-m",
        "hydra/launcher=submitit_local",
        "model=mlp",
        "dataset=ring8",
        "train.steps=2",
        "train.threads=1",
        "seed=0,1,2,3",
        cwd=workdir,
        own_process=True,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    statuses = sorted((workdir / "multirun").glob("*/*/*/status.json"))
    assert len(statuses) == 4 and all(json.loads(p.read_text())["status"] == "finished" for p in statuses)

    one = train(workdir, "one", "train.steps=2")
    ddp = run_gan(
        "train",
        "-m",
        "hydra/launcher=local_ddp",
        *SAME_RUN,
        "train.steps=2",
        "hydra.sweep.dir=ddp",
        cwd=workdir,
        own_process=True,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert (
        "distributed: 2 processes" in (workdir / "ddp" / "0" / "train.log").read_text()
    )  # ranks from submitit's job environment
    assert_same_weights(one, workdir / "ddp" / "0")


def test_index_shards_tile_the_global_batch() -> None:
    from gan_cli.data.batching import IndexStream

    whole = IndexStream(100, 16, seed=3)
    shards = [IndexStream(100, 16, seed=3, shard=(r, 4)) for r in range(4)]
    for _ in range(9):  # across an epoch boundary
        assert torch.equal(whole.next_indices(), torch.cat([s.next_indices() for s in shards]))
