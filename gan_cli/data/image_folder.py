"""`dataset=image_folder`: a folder of the user's images (with class subfolders, or without), read from disk as a
stream, and what gan says about what it found there."""

from __future__ import annotations

import errno
import logging
import os
import re
from pathlib import Path

import torch
from torch.utils.data import Dataset

from gan_cli.data.loaded import LoadedData, balanced_subset
from gan_cli.data.spec import DataSpec
from gan_cli.errors import GanError, first_of, shown
from gan_cli.logs import CONSOLE

log = logging.getLogger(__name__)


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
        keep = balanced_subset(torch.tensor(labels) if self.classes else None, min(limit or len(files), len(files)))
        keep = keep.tolist()
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
        except Image.DecompressionBombError as exc:  # in a DataLoader worker too: an OSError names its file
            raise OSError(errno.EFBIG, f"this image {too_large(exc)}", str(self.files[i])) from exc
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
        except Image.DecompressionBombError as exc:
            raise GanError(f"dataset.path: the image {shown(p)} {too_large(exc)}.") from exc
        except (OSError, ValueError, SyntaxError):  # an unreadable image stops the run when it is read, with its name
            continue
    return sizes, modes


def too_large(err: Exception) -> str:
    """Pillow's refusal of an image whose header claims more pixels than it decodes (a guard against decompression
    bombs: a small file whose pixels would fill the memory), in words: its size and the limit."""
    size, limit = (re.search(pattern, str(err)) for pattern in (r"\((\d+) pixels\)", r"limit of (\d+)"))
    said = f"{int(size.group(1)):,} pixels, over the {int(limit.group(1)):,}" if size and limit else "over the limit"
    return (
        f"is {said} Pillow decodes at most (a guard against decompression bombs); shrink it (images are resized to "
        f"dataset.image_size anyway) or remove it from the folder"
    )


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
