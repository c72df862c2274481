"""The suite's fixtures. Everything else the tests share (running `gan`, the tiny override lists, the checkpoint
comparisons) is in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import UNDER_XDIST


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def lenet_cache(tmp_path_factory) -> Path:
    """GAN_CACHE_DIR for the rest of the session (CLI subprocesses too): the mnist5k classifier is trained into it once.

    Under pytest-xdist the workers share one cache beside their own temp dirs, and the first to get
    there trains the classifier while the others wait on the lock."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    cache = (root.parent if UNDER_XDIST else root) / "gan_cache"
    cache.mkdir(exist_ok=True)
    previous = os.environ.get("GAN_CACHE_DIR")
    os.environ["GAN_CACHE_DIR"] = str(cache)
    with FileLock(str(cache) + ".lock"):
        _train_mnist5k_classifier()
    yield cache
    if previous is None:
        os.environ.pop("GAN_CACHE_DIR", None)
    else:
        os.environ["GAN_CACHE_DIR"] = previous


def _train_mnist5k_classifier() -> None:
    import torch
    from omegaconf import OmegaConf

    from gan_cli.data import load_dataset
    from gan_cli.metrics.backbones import build_backbone

    data = load_dataset(OmegaConf.create({"name": "mnist5k", "limit": None, "image_size": None}), 0)
    build_backbone("lenet", data, torch.device("cpu"))


@pytest.fixture(scope="session")
def mnist5k():
    from omegaconf import OmegaConf

    from gan_cli.data import load_dataset

    return load_dataset(OmegaConf.create({"name": "mnist5k", "limit": None, "image_size": None}), 0)
