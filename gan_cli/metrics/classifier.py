"""The domain classifier behind the `lenet` backbone: trained by gan itself, so metrics work offline.

InceptionV3 features are the standard for natural photos, but they need weights from the
internet and mean little on 28x28 digits. A small LeNet-style network trained on the dataset's
own labels gives features and class probabilities that fit the domain. It is trained once per
dataset and cached in a user cache dir, keyed by the dataset's name and a hash of its content,
and its held-out accuracy travels with every score it produces (a score is only as good as the
network behind it).
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from gan_cli.checkpoint import save_checkpoint
from gan_cli.errors import GanError
from gan_cli.rng import seeded_global_rng

VERSION = 1  # bump when the architecture or the training recipe changes: old cache entries are then ignored
HELD_OUT = 0.1  # fraction of the labelled data kept out of training to measure accuracy
EPOCHS = 10
BATCH = 128
FEATURES = 128


def cache_dir() -> Path:
    """$GAN_CACHE_DIR, else $XDG_CACHE_HOME/gan_cli, else ~/.cache/gan_cli."""
    configured = os.environ.get("GAN_CACHE_DIR")
    if configured:
        return Path(os.path.expanduser(configured))
    return Path(os.path.expanduser(os.environ.get("XDG_CACHE_HOME") or "~/.cache")) / "gan_cli"


class LeNet(nn.Module):
    """LeNet-5, a little wider (Conv-ReLU-Pool twice, two linear layers); any image size, 1 or 3 channels.

    No BatchNorm: its backward pass dominates the cost on CPU, and features of a fixed network
    should not depend on batch statistics anyway."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(32 * 16, FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(penultimate features, class logits)."""
        features = self.body(x)
        return features, self.head(features)


@dataclass
class DomainClassifier:
    net: LeNet
    accuracy: float  # on the held-out split, never seen in training
    path: Path


def content_hash(x: torch.Tensor, y: torch.Tensor) -> str:
    h = hashlib.sha1()
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, held-out indices): a fixed permutation, the same on every machine."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1234))
    n_held = max(1, int(round(n * HELD_OUT)))
    return order[n_held:], order[:n_held]


def domain_classifier(
    name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int, device: torch.device
) -> DomainClassifier:
    """The cached classifier for this dataset, trained now (with a progress bar) when there is none."""
    if y is None or num_classes < 2:
        raise GanError(
            f"The lenet backbone trains a classifier on the dataset's labels, but dataset {name!r} has none. "
            f"Use a labelled dataset (mnist5k, mnist, fashion_mnist, cifar10, image_folder with class subfolders) or backbone=inception."
        )
    path = cache_dir() / "classifiers" / f"{name}-{content_hash(x, y)}-v{VERSION}.pt"
    with seeded_global_rng(
        0
    ):  # the same classifier wherever it is trained, and a resumed run's random stream untouched
        net = LeNet(x.shape[1], num_classes)
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(saved["state"])
        return DomainClassifier(net.to(device).eval(), float(saved["accuracy"]), path)
    accuracy = _train(net, x, y, device, name)
    try:
        save_checkpoint({"state": net.state_dict(), "accuracy": accuracy, "dataset": name, "n": len(x)}, path)
    except OSError as err:  # a full or read-only disk: the scores need the classifier, not its cached copy
        print(f"gan: warning: the {name} classifier could not be cached in {path.parent} ({err.strerror or err}); "
              f"it is trained again next time", file=sys.stderr)  # fmt: skip
    return DomainClassifier(net.eval(), accuracy, path)


def _train(net: LeNet, x: torch.Tensor, y: torch.Tensor, device: torch.device, name: str) -> float:
    train_idx, held_idx = split(len(x))
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps_per_epoch = max(1, len(train_idx) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=EPOCHS * steps_per_epoch)
    gen = torch.Generator().manual_seed(0)
    columns = (
        TextColumn(f"[bold]training the lenet classifier for {name} (once, then cached)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("classifier", total=EPOCHS * steps_per_epoch)
        for _ in range(EPOCHS):
            order = train_idx[torch.randperm(len(train_idx), generator=gen)]
            for b in range(steps_per_epoch):
                idx = order[b * BATCH : (b + 1) * BATCH]
                xb, yb = x[idx].to(device), y[idx].to(device)
                loss = F.cross_entropy(net(xb)[1], yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                progress.advance(task)
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(held_idx), 1024):
            idx = held_idx[i : i + 1024]
            correct += int((net(x[idx].to(device))[1].argmax(1).cpu() == y[idx]).sum())
    return correct / len(held_idx)
