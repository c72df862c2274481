"""`hydra.job.chdir=true` runs the job inside its run directory; the paths a user typed keep meaning the folder
gan was started from (issue 29 item 8), as `_target_` imports already do."""

from __future__ import annotations

from pathlib import Path

from helpers import run_gan

SMALL = [
    "model=mlp",
    "model.g_width=8",
    "model.d_width=8",
    "model.z_dim=4",
    "dataset=image_folder",
    "dataset.path=imgs",
    "dataset.image_size=8",
    "train.batch_size=4",
    "train.num_workers=0",
    "train.threads=1",
    "train.log_every=1",
    "train.sample_every=2",
    "train.ckpt_every=2",
    "hydra.job.chdir=true",
]


def test_relative_paths_keep_their_meaning_under_chdir(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(8):
        Image.new("RGB", (8, 8), (i * 30, 0, 255 - i * 30)).save(tmp_path / "imgs" / f"{i}.png")
    first = run_gan("train", *SMALL, "train.steps=2", "hydra.run.dir=runs/one", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run = tmp_path / "runs" / "one"
    assert (run / "checkpoints" / "last.pt").is_file()
    resumed = run_gan("train", "resume=runs/one", "train.steps=4", "hydra.job.chdir=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "step 4/4" in resumed.stdout
