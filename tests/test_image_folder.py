"""dataset=image_folder reads what the user points it at, says what it found, and refuses a layout it cannot label
(issue 29 items 12 and 23)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import compose_train, only_run_dir, run_gan
from PIL import Image

from gan_cli.data import load_dataset
from gan_cli.errors import GanError


def _images(folder: Path, n: int, size: int = 8, mode: str = "RGB") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new(mode, (size, size), (10 * i, 50, 90) if mode == "RGB" else 10 * i).save(folder / f"img{i}.png")
    return folder


def _load(path: Path, *overrides: str):
    return load_dataset(compose_train("dataset=image_folder", f"dataset.path={path}", *overrides).dataset, seed=0)


# ---------------------------------------------------------------------------------------------
# 23. symlinked class folders, a stray image at the top level
# ---------------------------------------------------------------------------------------------
def test_symlinked_class_folders_are_followed_and_a_link_loop_is_read_once(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _images(root / "cats", 10)
    _images(tmp_path / "elsewhere" / "dogs", 10)
    os.symlink(tmp_path / "elsewhere" / "dogs", root / "dogs")  # a class folder kept on another disk
    os.symlink(root, root / "cats" / "loop")  # a link back up: followed once, never round and round
    data = _load(root)
    assert len(data) == 20 and data.spec.num_classes == 2
    assert sorted(data.stream.labels) == [0] * 10 + [1] * 10


def test_a_stray_image_beside_class_folders_is_refused_in_one_paragraph(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _images(root / "cats", 3)
    _images(root / "dogs", 3)
    Image.new("RGB", (8, 8)).save(root / "stray.png")
    with pytest.raises(GanError) as caught:
        _load(root)
    message = str(caught.value)
    assert "stray.png" in message and "cats" in message and "dogs" in message, message
    assert "class" in message and "\n" not in message


# ---------------------------------------------------------------------------------------------
# 12. what image_folder found, said in the console and train.log; a missing path refused before a run directory
# ---------------------------------------------------------------------------------------------
SMALL = ["model=mlp", "model.g_width=8", "model.d_width=8", "model.z_dim=4", "train.batch_size=4", "train.steps=1"]
QUIET = ["eval.every=0", "train.num_workers=0", "train.log_every=1", "train.sample_every=1", "train.ckpt_every=1"]


def test_image_folder_says_what_it_found_and_converts_grey_images_with_a_notice(tmp_path: Path) -> None:
    root = tmp_path / "digits"
    _images(root / "cats", 6, mode="L")
    _images(root / "dogs", 4, mode="L")
    proc = run_gan(
        "train",
        "dataset=image_folder",
        f"dataset.path={root}",
        "dataset.image_size=16",
        "model.cond=auto",
        *SMALL,
        *QUIET,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    console = " ".join((proc.stdout + proc.stderr).split())
    log = " ".join((only_run_dir(tmp_path) / "train.log").read_text().split())
    for text in (console, log):
        assert "image_folder: 10 images" in text and "2 classes (cats, dogs)" in text, text
        assert "3x16x16" in text and "8x8" in text, text
        assert "greyscale" in text and "dataset.channels=1" in text, text  # the conversion, said once, with the way out
        assert "model.cond=auto" in text and "class-conditional" in text, text
        assert "data_on_device=False" in text and "data_on_device=True" not in text, text  # read from disk per batch


def test_an_unlabelled_folder_says_so_and_one_channel_stays_one(tmp_path: Path) -> None:
    root = _images(tmp_path / "faces", 6, size=12, mode="L")
    proc = run_gan(
        "train",
        "dataset=image_folder",
        f"dataset.path={root}",
        "dataset.image_size=8",
        "dataset.channels=1",
        "model.cond=none",
        *SMALL,
        *QUIET,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    console = " ".join((proc.stdout + proc.stderr).split())
    assert "image_folder: 6 images" in console and "no labels" in console and "1x8x8" in console, console
    assert "converted" not in console and "model.cond=auto" not in console


def test_image_folder_without_a_path_is_refused_before_a_run_directory_exists(tmp_path: Path) -> None:
    proc = run_gan("train", "dataset=image_folder", *SMALL, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "needs dataset.path" in proc.stderr
    assert not (tmp_path / "outputs").exists(), sorted(str(p) for p in (tmp_path / "outputs").rglob("*"))
