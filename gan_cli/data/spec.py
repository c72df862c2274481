"""What a model needs to know about a dataset, and nothing else.

A `DataSpec` travels inside every checkpoint, so `gan sample` can rebuild a generator without
touching the data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DataSpec:
    name: str
    shape: tuple[int, ...]  # (C, H, W) for images, (d,) for vectors
    num_classes: int = 0  # 0 = unlabelled
    labels: str = "classes"  # what the labels are: the data's classes, or k-means "clusters" standing in for them

    def __post_init__(self) -> None:
        # a plain str even when built from a config Enum: the spec is pickled into weights-only checkpoints
        object.__setattr__(self, "name", str(self.name))

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def describe(self) -> str:
        """'image_folder: 3x64x64, 10 classes', for messages."""
        kind = "k-means clusters as labels" if self.labels == "clusters" else "classes"
        classes = f"{self.num_classes} {kind}" if self.num_classes else "no labels"
        return f"{self.name}: {'x'.join(map(str, self.shape))}, {classes}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        return cls(
            name=str(d["name"]),
            shape=tuple(int(s) for s in d["shape"]),
            num_classes=int(d["num_classes"]),
            labels=str(d.get("labels", "classes")),  # checkpoints from before dataset.labels: the data's classes
        )

    @property
    def conditions_on_classes(self) -> bool:
        """G takes the data's class labels (so `cond` can check it draws the class it is asked for)."""
        return self.num_classes > 0 and self.labels == "classes"
