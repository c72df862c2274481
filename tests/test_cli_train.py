"""End to end through the real `gan` command: a run directory with events, checkpoints and samples."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY, only_run_dir, run_gan
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REQUIRED_TAGS = {"loss/D", "loss/G", "D(x)", "D(G(z))", "D(G(z))/g_step", "grad_norm/D", "grad_norm/G", "lr/D", "lr/G"}


def scalar_tags(run_dir: Path) -> set[str]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_default_train_writes_a_complete_run_dir(workdir: Path) -> None:
    proc = run_gan("train", "train.steps=6", *TINY, cwd=workdir, check=True)
    run = only_run_dir(workdir)
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "train.log").read_text().count("step ") >= 3
    assert (run / "checkpoints" / "last.pt").is_file()
    assert (run / "checkpoints" / "step_000004.pt").is_file()
    assert (run / "samples" / "step_000004.png").is_file()
    assert list(run.glob("events.out.tfevents.*"))
    tags = scalar_tags(run)
    assert REQUIRED_TAGS <= tags, REQUIRED_TAGS - tags
    assert "estimate/jsd" in tags
    assert "step 6/6" in proc.stdout


def test_wgan_gp_logs_the_wasserstein_estimate(workdir: Path) -> None:
    run_gan("train", "model=dcgan", "loss=wgan_gp", "train.steps=2", *TINY, cwd=workdir, check=True)
    tags = scalar_tags(only_run_dir(workdir))
    assert {"estimate/wasserstein", "loss/penalty"} <= tags
