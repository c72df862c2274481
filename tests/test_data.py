"""Datasets load as the models expect; downloads fail offline with a message that helps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import compose_train
from PIL import Image

from gan_cli.data import load_dataset
from gan_cli.data.batching import IndexStream
from gan_cli.errors import GanError


def test_mnist5k_loads_offline_as_real_digits() -> None:
    data = load_dataset(compose_train("dataset=mnist5k").dataset, seed=0)
    assert data.x.shape == (5000, 1, 28, 28) and data.spec.num_classes == 10
    assert data.x.min() == -1.0 and data.x.max() == 1.0
    assert torch.bincount(data.y).tolist() == [500] * 10
    # the digits are real: the background is black (-1) and about a fifth of the pixels are ink
    ink = (data.x > 0).float().mean().item()
    assert 0.1 < ink < 0.3


def test_limit_and_resize() -> None:
    data = load_dataset(compose_train("dataset=mnist5k", "dataset.limit=100", "dataset.image_size=32").dataset, seed=0)
    assert data.x.shape == (100, 1, 32, 32) and data.spec.shape == (1, 32, 32)
    assert torch.bincount(data.y).tolist() == [10] * 10, "dataset.limit takes the same number of every class"
    odd = load_dataset(compose_train("dataset=mnist5k", "dataset.limit=23").dataset, seed=0)
    assert sorted(torch.bincount(odd.y).tolist()) == [2] * 7 + [3] * 3


def test_toys_honour_limit_and_refuse_image_size() -> None:
    data = load_dataset(compose_train("dataset=ring8", "dataset.limit=80").dataset, seed=0)
    assert data.x.shape == (80, 2) and torch.bincount(data.y).tolist() == [10] * 8 and data.spec.num_classes == 8
    with pytest.raises(GanError, match="dataset.image_size=32 resizes images, but dataset=ring8 holds points"):
        load_dataset(compose_train("dataset=ring8", "dataset.image_size=32").dataset, seed=0)


def test_image_folder_limit_takes_every_class_not_the_first_folders(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        _write_images(tmp_path / name, 4)
    data = load_dataset(
        compose_train("dataset=image_folder", f"dataset.path={tmp_path}", "dataset.limit=6").dataset, seed=0
    )
    assert sorted(data.stream.labels) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("name,dim,classes", [("ring8", 2, 8), ("grid25", 2, 25), ("gauss1d", 1, 0)])
def test_toys(name: str, dim: int, classes: int) -> None:
    data = load_dataset(compose_train(f"dataset={name}").dataset, seed=0)
    assert data.x.shape == (20000, dim) and data.spec.num_classes == classes
    if name == "gauss1d":
        assert abs(data.x.mean().item() - 7.0) < 0.05 and abs(data.x.std().item() - 1.0) < 0.05


@pytest.mark.parametrize(
    "name,folder", [("mnist", "MNIST/raw"), ("fashion_mnist", "FashionMNIST/raw"), ("cifar10", "cifar-10-batches-py")]
)
def test_torchvision_sets_offline_say_where_to_put_files(tmp_path: Path, name: str, folder: str) -> None:
    cfg = compose_train(f"dataset={name}", f"dataset.root={tmp_path}", "dataset.download=false").dataset
    with pytest.raises(GanError) as err:
        load_dataset(cfg, seed=0)
    assert str(tmp_path / folder) in str(err.value) and "dataset=mnist5k" in str(err.value)


def test_failed_download_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    import urllib.error

    import torchvision.datasets as tvd

    def offline(self, *a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvd.MNIST, "download", offline)
    cfg = compose_train("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=true").dataset
    with pytest.raises(GanError, match="the download failed.*no network"):
        load_dataset(cfg, seed=0)


def _write_images(folder: Path, n: int, size: int = 20) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (size, size + 4), (10 * i, 100, 200)).save(folder / f"img{i}.png")


def test_image_folder_resizes_crops_and_labels_subfolders(tmp_path: Path) -> None:
    _write_images(tmp_path / "cats", 3)
    _write_images(tmp_path / "dogs", 2)
    data = load_dataset(
        compose_train("dataset=image_folder", f"dataset.path={tmp_path}", "dataset.image_size=16").dataset, seed=0
    )
    assert len(data) == 5 and data.spec.shape == (3, 16, 16) and data.spec.num_classes == 2
    x, y = data.stream[4]
    assert x.shape == (3, 16, 16) and -1.0 <= x.min() and x.max() <= 1.0 and y == 1


def test_image_folder_without_images_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(GanError, match="holds no images"):
        load_dataset(compose_train("dataset=image_folder", f"dataset.path={tmp_path}").dataset, seed=0)


def test_index_stream_gives_every_sample_once_per_epoch_and_resumes_exactly() -> None:
    stream = IndexStream(n=10, batch_size=4, seed=3)
    seen = torch.cat([stream.next_indices() for _ in range(5)])  # 20 indices = 2 epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    resumed = IndexStream(n=10, batch_size=4, seed=3, start_batch=3)
    assert torch.equal(resumed.next_indices(), seen[12:16])


def test_image_folder_without_a_path_says_which_option_is_missing() -> None:
    with pytest.raises(GanError, match="needs dataset.path") as err:
        load_dataset(compose_train("dataset=image_folder").dataset, seed=0)
    assert "'None'" not in str(err.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["dataset=mnist5k"],
        ["dataset=mnist5k", "dataset.image_size=32"],
        ["dataset=ring8"],
        ["dataset=grid25", "dataset.limit=50"],
        ["dataset=gauss1d"],
    ],
)
def test_the_planned_spec_is_the_spec_of_the_loaded_data(overrides: list[str]) -> None:
    """The CLI checks model options against planned_spec before any data are read: it must be what loading gives."""
    from gan_cli.data.datasets import planned_spec

    cfg = compose_train(*overrides).dataset
    assert planned_spec(cfg) == load_dataset(cfg, seed=0).spec
