"""A non-editable wheel install finds its configs and runs from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO


@pytest.mark.slow
def test_wheel_install_has_configs_and_trains(tmp_path: Path) -> None:
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("gan_cli-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    assert (site / "gan_cli" / "conf" / "train.yaml").is_file()
    assert (site / "gan_cli" / "conf" / "model" / "dcgan.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed copy only, not this checkout
    gan = site / "bin" / "gan"
    run = tmp_path / "elsewhere"
    run.mkdir()
    help_text = subprocess.run(
        [sys.executable, str(gan), "train", "--help"], cwd=run, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "model=dcgan" in help_text and "# latent size" in help_text
    proc = subprocess.run(
        [
            sys.executable,
            str(gan),
            "train",
            "train.steps=2",
            "model.g_width=4",
            "model.d_width=4",
            "train.batch_size=8",
            "dataset.limit=64",
        ],
        cwd=run,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(run.glob("outputs/*/*/checkpoints/last.pt"))
    where = subprocess.run(
        [sys.executable, "-c", "import gan_cli; print(gan_cli.__file__)"],
        cwd=run,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(site))
