"""End to end through the real `gan` command: a run directory with events, checkpoints and samples."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import TINY, only_run_dir, run_gan, scalar_tags

REQUIRED_TAGS = {"loss/D", "loss/G", "D(x)", "D(G(z))", "D(G(z))/g_step", "grad_norm/D", "grad_norm/G", "lr/D", "lr/G"}


@pytest.mark.slow
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


@pytest.mark.slow
def test_wgan_gp_logs_the_wasserstein_estimate(workdir: Path) -> None:
    run_gan("train", "model=dcgan", "loss=wgan_gp", "train.steps=2", *TINY, cwd=workdir, check=True)
    tags = scalar_tags(only_run_dir(workdir))
    assert {"estimate/wasserstein", "loss/penalty"} <= tags


def test_the_tiny_debug_preset_trains_and_resumes_from_the_command_line(workdir: Path) -> None:
    """`gan train +debug=tiny` (conf/debug/tiny.yaml): tiny widths and short cadences, with no other option; a run
    trained with it resumes (its saved overrides name the preset)."""
    proc = run_gan("train", "+debug=tiny", "train.steps=4", cwd=workdir, check=True)
    assert "step 4/4" in proc.stdout
    run = only_run_dir(workdir)
    assert (run / "checkpoints" / "step_000004.pt").is_file() and (run / "samples" / "step_000004.png").is_file()
    assert "+debug=tiny" in (run / ".hydra" / "overrides.yaml").read_text()
    saved = (run / ".hydra" / "config.yaml").read_text()
    assert "g_width: 8" in saved and "limit: 256" in saved
    resumed = run_gan("train", f"resume={run}", "train.steps=6", cwd=workdir, check=True)
    assert "step 6/6" in resumed.stdout and only_run_dir(workdir) == run
