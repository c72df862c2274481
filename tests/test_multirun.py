"""`gan train -m`: one directory per job, and a failing job does not stop the others."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import TINY, run_gan


def job_dirs(cwd: Path) -> list[Path]:
    return sorted(p for p in (cwd / "multirun").glob("*/*/*") if p.is_dir() and p.name.isdigit())


@pytest.mark.slow
def test_two_job_sweep_gives_two_runs(workdir: Path) -> None:
    proc = run_gan("train", "-m", "loss=ns,wgan_gp", "train.steps=2", *TINY, cwd=workdir, check=True)
    jobs = job_dirs(workdir)
    assert len(jobs) == 2, proc.stdout
    for job in jobs:
        assert (job / "checkpoints" / "last.pt").is_file() and list(job.glob("events.out.tfevents.*"))
    assert "loss=wgan_gp" in (jobs[1] / ".hydra" / "overrides.yaml").read_text()


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep_and_is_one_paragraph(workdir: Path) -> None:
    # a missing image folder is found only when the job reads its data (options are all checked before the sweep)
    proc = run_gan(
        "train",
        "-m",
        "dataset=image_folder,ring8",
        f"dataset.path={workdir / 'nope'}",
        "model=mlp",
        "train.steps=2",
        "model.g_width=8",
        "model.d_width=8",
        cwd=workdir,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [
        line for line in proc.stderr.splitlines() if line.startswith("gan: error:")
    ]  # the others: job 1's console log
    assert len(lines) == 2 and "is not a folder" in lines[0]
    assert lines[1].startswith("gan: error: 1 of 2 sweep jobs failed") and "0 (dataset=image_folder" in lines[1]
    assert "0 failed: " in proc.stdout and "is not a folder" in proc.stdout  # the end-of-sweep report, with the reason
    jobs = job_dirs(workdir)
    assert len(jobs) == 2
    assert not (jobs[0] / "checkpoints").exists() and (jobs[1] / "checkpoints" / "last.pt").is_file()
    assert "is not a folder" in (jobs[0] / "train.log").read_text()  # the failed job's directory says why


def test_a_bad_option_value_in_a_sweep_is_refused_before_any_job_runs(workdir: Path) -> None:
    proc = run_gan("train", "-m", "optimizer.lr=0.001,-1", "train.steps=2", *TINY, cwd=workdir)
    assert proc.returncode == 2 and "optimizer.lr=-1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (workdir / "multirun").exists()


def test_a_bad_value_anywhere_in_a_sweep_is_one_paragraph_before_any_job_runs(tmp_path: Path) -> None:
    proc = run_gan("train", "-m", "model=mlp,dcgn", "dataset=ring8", "train.steps=2", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "dcgn" in errors[0] and "mlp" in errors[0]
    assert not (tmp_path / "multirun").exists()
