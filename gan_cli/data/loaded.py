"""What a loaded dataset is (`LoadedData`: its spec, and its tensors or a stream from disk), and how a limit keeps
the classes balanced: shared by the dataset registry and the image-folder reader, which import each other's
nothing."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from gan_cli.data.spec import DataSpec


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
