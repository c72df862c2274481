"""Batches by index from a deterministic stream of per-epoch permutations.

Batch b is positions [b*B, (b+1)*B) of the concatenated permutations perm(seed, 0),
perm(seed, 1), ... so every sample appears once per epoch, and the whole state of the data
order is one integer (batches consumed): resuming at batch b gives the same batches as an
uninterrupted run. In a distributed run B is the global batch and rank r of W takes the r-th of its W equal
slices, so the count of global batches is still the whole state, whatever the number of processes.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader

from gan_cli.data.loaded import LoadedData


class IndexStream:
    """`device`: where the indices are handed out; a GPU keeps each epoch's permutation resident, so a
    batch costs no host-to-device copy (the permutation itself is drawn on the CPU, identically everywhere)."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start_batch: int = 0,
        device: torch.device | str = "cpu",
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world = shard
        self.batches_done = start_batch
        self.device = torch.device(device)
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            # modulo 2^64, what torch's generator takes: the same stream as before for every seed that fitted
            gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**64)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=gen).to(self.device)
        return self._perm

    def next_indices(self) -> torch.Tensor:
        start = self.batches_done * self.batch_size
        parts, need = [], self.batch_size
        while need > 0:
            epoch, offset = divmod(start, self.n)
            take = self._permutation(epoch)[offset : offset + need]
            parts.append(take)
            need -= len(take)
            start += len(take)
        self.batches_done += 1
        batch = parts[0] if len(parts) == 1 else torch.cat(parts)
        if self.world == 1:
            return batch
        size = self.batch_size // self.world
        return batch[self.rank * size : (self.rank + 1) * size]

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            yield self.next_indices().tolist()


class TensorBatcher:
    """An in-memory dataset as one tensor; a batch is one gather (no DataLoader, no per-sample work).

    on_device: the tensor lives on the training device (the fast path); otherwise it stays in
    host memory and each gathered batch is copied over (through pinned memory on CUDA), for sets too large for the GPU.
    """

    def __init__(
        self,
        data: LoadedData,
        batch_size: int,
        device: torch.device,
        seed: int,
        start_batch: int = 0,
        on_device: bool = True,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        assert data.x is not None
        home = device if on_device else torch.device("cpu")
        self.x = data.x.to(home)
        self.y = None if data.y is None else data.y.to(home)
        self.device = device
        self.stream = IndexStream(len(self.x), batch_size, seed, start_batch, device=home, shard=shard)

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self.stream.next_indices()
        x, y = self.x[idx], (self.y[idx] if self.y is not None else None)
        if x.device != self.device:
            x = x.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else x.to(self.device)
            y = None if y is None else y.to(self.device)
        return x, y

    @property
    def batches_done(self) -> int:
        return self.stream.batches_done


class LoaderBatcher:
    """Datasets read from disk: a DataLoader with workers and pinned memory, fed by the same index stream."""

    def __init__(
        self,
        data: LoadedData,
        batch_size: int,
        device: torch.device,
        seed: int,
        num_workers: int,
        start_batch: int = 0,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.stream = IndexStream(len(data), batch_size, seed, start_batch, shard=shard)
        self.device = device
        self.has_labels = data.spec.num_classes > 0
        loader = DataLoader(
            data.stream,
            batch_sampler=self.stream,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=torch.Generator().manual_seed(seed),  # worker seeds from here, not from the global RNG
        )
        self._it = iter(loader)
        self._consumed = start_batch

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, y = next(self._it)
        self._consumed += 1
        y = y.to(self.device, non_blocking=True) if self.has_labels else None
        return x.to(self.device, non_blocking=True), y

    @property
    def batches_done(self) -> int:
        # the sampler runs ahead of the workers' prefetching; what counts for resume is what training consumed
        return self._consumed


def make_batcher(
    data: LoadedData,
    batch_size: int,
    device: torch.device,
    seed: int,
    num_workers: int,
    start_batch: int = 0,
    on_device: bool = True,
    shard: tuple[int, int] = (0, 1),
):
    """`batch_size` is the global batch; with `shard` = (rank, world) each batch is this rank's slice of it."""
    if data.x is not None:
        return TensorBatcher(data, batch_size, device, seed, start_batch, on_device, shard)
    return LoaderBatcher(data, batch_size, device, seed, num_workers, start_batch, shard)
