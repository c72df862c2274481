"""What training, `gan sample`, `gan eval` and the scores during training all need at run time: the device,
the seeds, weights loaded into a built model, and samples drawn from a generator.

It sits below `train`, `sample`, `evaluate` and `metrics.in_training`, and imports none of them, so they
share one copy of each piece without importing each other.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from gan_cli.checkpoint import check_layout, load_checkpoint
from gan_cli.components import check_checkpoint_targets
from gan_cli.data import DataSpec
from gan_cli.errors import INTERRUPTED, GanError, first_of, shown
from gan_cli.models import build_models, sample_latent, truncate
from gan_cli.rng import seeded_global_rng

REBUILT_GROUPS = (
    "model",
    "dataset",
    "loss",
)  # what sample and eval rebuild from a checkpoint's config (never its optimizer)


def load_generator(
    ckpt_target: str, device: torch.device, ema: bool = True, allow_targets: Sequence[str] = ()
) -> tuple[torch.nn.Module, DataSpec, dict, Path]:
    """(G in eval mode, data spec, checkpoint dict, checkpoint path); the EMA generator when asked and present.

    A checkpoint naming its own components (`_target_`) is refused unless the user allowed their modules."""
    ckpt, path = load_checkpoint(ckpt_target, map_location=device)
    check_layout(ckpt, path)
    check_checkpoint_targets(ckpt["config"], REBUILT_GROUPS, allow_targets, shown(path))
    spec = DataSpec.from_dict(ckpt["data_spec"])
    G, _ = build_models(OmegaConf.create(ckpt["config"]["model"]), spec)
    which = "G_ema" if ema and "G_ema" in ckpt["models"] else "G"
    load_state(G, ckpt["models"][which], path)
    check_finite_weights(G, which, path, int(ckpt.get("step", 0)))
    return G.to(device).eval(), spec, ckpt, path


def check_finite_weights(G: nn.Module, which: str, path: Path, step: int) -> None:
    """Refuse a generator whose weights (or BatchNorm statistics) hold NaN or inf: every sample would be NaN."""
    bad = [
        name
        for name, t in G.state_dict().items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if bad:
        listed = first_of(bad, 3)
        raise GanError(
            f"The generator in {shown(path)} (models.{which}, step {step}) holds non-finite weights (nan or inf, in "
            f"{listed}), so every sample it draws would be NaN. The run diverged before this checkpoint was written; "
            f"use an earlier checkpoint of the run (checkpoints/step_*.pt) or train again with a lower learning rate."
        )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise GanError(f"device={name!r} is not a device. Allowed: auto, cpu, cuda, cuda:N, mps.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GanError(
            f"device={name!r} was asked for, but this PyTorch sees no CUDA GPU. Use device=auto or device=cpu."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise GanError(f"device={name!r} was asked for, but MPS is not available here. Use device=auto or device=cpu.")
    return device


def load_state(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise GanError(
            f"The weights in {str(path)!r} do not fit the model its config describes ({str(exc).splitlines()[0]}). "
            f"The checkpoint is incompatible with this version of gan or was edited."
        ) from exc


@torch.no_grad()
def generate(
    G: torch.nn.Module,
    n: int,
    seed: int,
    device: torch.device,
    batch: int = 1024,
    labels: Optional[torch.Tensor] = None,
    truncation: Optional[float] = None,
) -> torch.Tensor:
    """n samples from noise drawn with `seed` (the same seed gives the same samples), in chunks to bound memory."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with seeded_global_rng(seed, device):  # model=style's noise inputs too; training's stream is left alone
        return render(G, truncate(G, sample_latent(G, n, "cpu", gen), truncation), labels, device, batch)


@torch.no_grad()
def render(
    G: torch.nn.Module, z: torch.Tensor, labels: Optional[torch.Tensor], device: torch.device, batch: int = 1024
) -> torch.Tensor:
    """G(z, labels) in chunks; labels None lets a conditional G cycle through its classes."""
    chunks = []
    for i in range(0, len(z), batch):
        y = labels[i : i + batch].to(device) if labels is not None else None
        chunks.append(G(z[i : i + batch].to(device), y).float().cpu())
    return torch.cat(chunks)


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def parallel_jobs(n_jobs: Optional[int]) -> int:
    """How many jobs a launcher runs at once, from joblib's n_jobs (-1: one per core, -2: all but one, ...)."""
    if not n_jobs:
        return 1
    return n_jobs if n_jobs > 0 else max(1, usable_cores() + 1 + n_jobs)


SWEEP_PARENT = "GAN_SWEEP_PID"  # the pid of the gan process that launched a sweep, inherited by its workers
WORKER_GRACE_S = 60.0  # after its parent died, a sweep worker's run has this long to save at the end of its step
_watching: list[int] = []  # the parent a watchdog of this process watches (one per process)
_orphaned = threading.Event()  # set once that parent is gone


def mark_sweep_parent() -> None:
    """Called by the gan that launches a sweep: the processes its launcher starts for the jobs know whose they are."""
    os.environ[SWEEP_PARENT] = str(os.getpid())


def exit_with_sweep_parent(poll_s: float = 0.5) -> None:
    """In a sweep's worker process (joblib's, a child of the gan that launched the sweep): when that gan dies (kill -9,
    or a Ctrl-C, after which it ends at once without joblib's shutdown of its workers), the worker stops too, instead
    of training on, and holding its memory, for as long as its job lasts. The job's run gets SIGTERM (it saves at the
    end of its step and stops, as on a SIGTERM from the user), then the worker ends (`exit_if_orphaned`); an idle
    worker ends on the signal; a process still alive WORKER_GRACE_S seconds later exits. Nothing happens in the
    launching process itself or outside a sweep."""
    parent = os.environ.get(SWEEP_PARENT, "")
    if not parent.isdigit() or int(parent) == os.getpid() or os.getppid() != int(parent) or _watching:
        return
    _watching.append(int(parent))

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(poll_s)
        _orphaned.set()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(WORKER_GRACE_S)
        os._exit(INTERRUPTED)

    threading.Thread(target=watch, name="gan-sweep-parent-watchdog", daemon=True).start()


def exit_if_orphaned() -> None:
    """After a sweep job's run: a worker whose launching gan died ends now, its run saved (no one waits for it)."""
    if _orphaned.is_set():
        import logging

        logging.shutdown()  # flush train.log
        os._exit(INTERRUPTED)


def set_threads(requested: Optional[int], parallel: int = 1) -> tuple[int, str]:
    """Set torch's CPU threads; (the number, why). Jobs that run side by side must share the cores: two
    processes with a thread per core each run many times slower than one after the other."""
    if requested is not None:
        if requested < 1:
            raise GanError(f"train.threads={requested} must be a positive number of threads, or null (chosen for you).")
        threads, why = requested, "train.threads"
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        threads, why = int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        threads = max(1, usable_cores() // max(1, parallel))
        why = f"{usable_cores()} cores / {parallel} parallel jobs" if parallel > 1 else f"{usable_cores()} cores"
    torch.set_num_threads(threads)
    return threads, why
