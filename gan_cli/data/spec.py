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

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataSpec":
        return cls(name=str(d["name"]), shape=tuple(int(s) for s in d["shape"]), num_classes=int(d["num_classes"]))
