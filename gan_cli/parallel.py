"""The collectives and DDP wrappers of one training run on several processes: torch.distributed (NCCL on GPUs, gloo on CPU), started by torch's
elastic launcher (the engine behind `torchrun`) from `gan train dist.nproc_per_node=N`, by `torchrun` itself, or by
Hydra's submitit launcher (Slurm, or local processes).

What a GAN needs beyond wrapping G and D in DistributedDataParallel, and how this module gives it:
- `train.batch_size` is the global batch; rank r trains on its r-th equal slice of every global batch of the one
  index stream (`data.batching`), so the data position is a count of global batches and a run resumes on any
  world size.
- Every per-sample random draw of a step (z and InfoGAN's codes, the penalties' interpolation points, DiffAugment's
  parameters, D's dropout masks) is drawn at the global batch size from the training stream, which every rank seeds alike, and cut
  to the rank's slice (`per_sample`). The ranks together draw exactly what one process draws: a run on 2 ranks is
  the run on 1, up to the order of float sums, and the saved RNG state is every rank's.
- Rank 0 alone writes (TensorBoard, samples, checkpoints, scores, status); logged scalars are means over the ranks,
  reduced once per `train.log_every`, and a stop request (Ctrl-C, SIGTERM) is agreed on at that same moment.
"""

from __future__ import annotations

import atexit
import datetime
import inspect
import logging
import logging.config
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn

from gan_cli.errors import GanError

log = logging.getLogger("gan_cli")


@dataclass(frozen=True)
class World:
    """This process's place in the run: rank, number of processes, and rank on this machine (its GPU)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def launched_world() -> Optional[World]:
    """The world a launcher placed this process in: torchrun and the elastic agent set RANK / WORLD_SIZE / LOCAL_RANK,
    submitit describes its tasks in its job environment (MASTER_ADDR / MASTER_PORT are then set from it here).
    None for a process started on its own."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return World(
            int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), int(env.get("LOCAL_WORLD_SIZE", 1))
        )
    if env.get("SUBMITIT_EXECUTOR"):
        import submitit

        job = submitit.JobEnvironment()
        if job.num_tasks <= 1:
            return None
        env.setdefault("MASTER_ADDR", job.hostnames[0] if job.hostnames else "127.0.0.1")
        env.setdefault("MASTER_PORT", str(20000 + int(uuid.uuid5(uuid.NAMESPACE_OID, str(job.job_id)).int % 20000)))
        local = job.num_tasks // max(1, job.num_nodes)
        return World(job.global_rank, job.num_tasks, job.local_rank, local)
    return None


def process_rank() -> int:
    """This process's rank as its launcher set it (0 when started alone), readable before any process group exists."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    if os.environ.get("SUBMITIT_EXECUTOR"):
        for key in ("SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID"):
            if key in os.environ:
                return int(os.environ[key])
    return 0


def backend_for(name: str, device: torch.device) -> str:
    if name != "auto":
        return name
    return "nccl" if device.type == "cuda" else "gloo"


def join(world: World, backend: str, timeout_s: float) -> None:
    """Join the process group of this run (once per process: a torchrun job may have joined it before Hydra started).

    Every way out of the process leaves the group (atexit), also a refusal raised between joining and training: gloo's
    worker threads still alive at interpreter shutdown abort the process (SIGABRT, "terminate called without an active
    exception"), which torchrun reports as a failed rank."""
    if dist.is_initialized():
        return
    dist.init_process_group(
        backend=backend, rank=world.rank, world_size=world.size, timeout=datetime.timedelta(seconds=timeout_s)
    )
    atexit.register(leave)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_device(world: World, device: torch.device) -> torch.device:
    """Each rank on a machine takes its own GPU (rank on the machine = GPU index)."""
    if device.type == "cuda" and world.distributed:
        if world.local_rank >= torch.cuda.device_count():
            raise GanError(
                f"rank {world.rank} needs GPU {world.local_rank}, but this machine has {torch.cuda.device_count()}; start at most one process per GPU."
            )
        torch.cuda.set_device(world.local_rank)
        return torch.device("cuda", world.local_rank)
    return device


def local_batch(batch_size: int, world: World) -> int:
    if batch_size % world.size:
        raise GanError(
            f"train.batch_size={batch_size} is the global batch, split evenly over the {world.size} processes of this run, "
            f"and {world.size} does not divide it. Use a multiple of {world.size} (e.g. {max(world.size, batch_size // world.size * world.size)})."
        )
    return batch_size // world.size


def _multiprocess() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


_segments = 1  # the batch a draw is for is this many global batches stacked (`stacked`)


@contextmanager
def stacked(segments: int) -> Iterator[None]:
    """Inside, a per-sample draw is for `segments` batches stacked on dim 0 (D's one pass over [real; fake]): each
    rank takes its slice of every segment, as one process's [real; fake] holds all real samples, then all fakes."""
    global _segments
    before, _segments = _segments, segments
    try:
        yield
    finally:
        _segments = before


def per_sample(draw: Callable[[int], torch.Tensor], n: int) -> torch.Tensor:
    """draw(n) in one process; in a distributed run draw(n * world size), the same global draw on every rank (their
    training streams are seeded alike), cut to this rank's slice: the global batch gets what one process would draw."""
    if not _multiprocess():
        return draw(n)
    world = dist.get_world_size()
    return rank_rows(draw(n * world), dist.get_rank(), world, _segments)


def rank_rows(whole: torch.Tensor, rank: int, world: int, segments: int = 1) -> torch.Tensor:
    """This rank's rows of a draw for the global batch: its slice, or with `segments` stacked batches, its slice of
    each (real rows of every rank, then fake rows of every rank, as in one process's [real; fake])."""
    n = len(whole) // world
    if segments == 1 or n % segments:
        return whole[rank * n : (rank + 1) * n]
    return whole.view(segments, world, n // segments, *whole.shape[1:])[:, rank].reshape(n, *whole.shape[1:])


def all_sum_(t: torch.Tensor) -> torch.Tensor:
    if _multiprocess():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_min_(t: torch.Tensor) -> torch.Tensor:
    if _multiprocess():
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t


def agree(flag: bool, device: torch.device) -> bool:
    """True on every rank when any rank says True (a stop request that reached some processes first)."""
    if not _multiprocess():
        return flag
    return bool(all_sum_(torch.tensor([1.0 if flag else 0.0], device=device)).item() > 0)


def broadcast_text(text: str) -> str:
    """Rank 0's string on every rank (the run directory, decided once)."""
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around a module with trainable weights (the 1-D example's G has one parameter, D three)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # each rank keeps its own buffers (BatchNorm's running statistics of its shard; rank 0's are saved): no broadcast per forward
    quiet = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
        else {"broadcast_buffers": False}
    )
    return DistributedDataParallel(module, device_ids=ids, **quiet)


def sync_batch_norm(
    setting: str, models: tuple[nn.Module, ...], device: torch.device, world: World
) -> tuple[tuple[nn.Module, ...], str]:
    """(the models, why) with BatchNorm turned into SyncBatchNorm where `dist.sync_bn` asks for it.

    auto: on for GPU runs of several processes, so D's and G's batch statistics are those of the global batch, as in
    one process (a BN discriminator that sees per-rank statistics sees smaller, noisier batches); PyTorch's
    SyncBatchNorm runs on GPUs only, so CPU runs keep per-rank statistics, and say so."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for model in models for m in model.modules())
    if not world.distributed or not has_bn or setting == "off":
        return models, "off" if has_bn or setting == "off" else "off (no BatchNorm)"
    if device.type != "cuda":
        if setting == "on":
            raise GanError(
                "dist.sync_bn=on: PyTorch's SyncBatchNorm runs on GPUs only. Use dist.sync_bn=auto or off on the CPU (each process then normalises with its own batch's statistics)."
            )
        return models, "off (SyncBatchNorm needs GPUs: per-rank batch statistics)"
    return tuple(nn.SyncBatchNorm.convert_sync_batchnorm(m) for m in models), "on"


def quiet_worker_logging(world: World) -> None:
    """Ranks other than 0 keep warnings on stderr and write no log file: train.log is rank 0's."""
    if world.main:
        return
    for logger in (logging.getLogger(), log):
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
                handler.close()
    log.setLevel(logging.WARNING)


class _WithExtras(nn.Module):
    def __init__(self, D: nn.Module) -> None:
        super().__init__()
        self.D = D

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None):
        return self.D.forward_with_extras(x, y) if hasattr(self.D, "forward_with_extras") else (self.D(x, y), {})


class DistributedD(nn.Module):
    """D under DistributedDataParallel with both of its entry points (logits, and logits with the heads' extras)
    going through DDP's forward, so the gradients of every D step are averaged over the ranks. G's step judges with
    the module inside (`unwrap`): D does not learn there, and its frozen weights must not enter DDP's reduction."""

    def __init__(self, D: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.ddp = wrap(_WithExtras(D), device)

    @property
    def inner(self) -> nn.Module:
        return self.ddp.module.D

    def forward_with_extras(self, x: torch.Tensor, y: Optional[torch.Tensor] = None):
        return self.ddp(x, y)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.ddp(x, y)[0]


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (what carries z_dim, the latent layout, the classes); others as they are."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(module, DistributedD):
        return module.inner
    return module.module if isinstance(module, DistributedDataParallel) else module
