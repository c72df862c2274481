"""Datasets as tensors and the batchers that feed them to training."""

from gan_cli.data.batching import make_batcher
from gan_cli.data.datasets import load_dataset
from gan_cli.data.loaded import LoadedData
from gan_cli.data.spec import DataSpec

__all__ = ["DataSpec", "LoadedData", "load_dataset", "make_batcher"]
