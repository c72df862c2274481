"""Random streams that stay apart: training draws from the global generator (saved in every checkpoint and
restored on resume), everything else (evaluation, sample images, classifier set-up) from its own seed."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Union

import torch


@contextmanager
def seeded_global_rng(seed: int, device: Union[str, torch.device] = "cpu") -> Iterator[None]:
    """Inside, the global generator starts from `seed`; after, it is back where it was.

    Some draws cannot take a generator argument (model=style's per-layer noise, a module's weight init).
    Wrapping them here makes their result a function of `seed` alone, and keeps them from moving
    training's random stream: an evaluation every 1,000 steps then neither changes the run nor depends on it.
    """
    devices = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
