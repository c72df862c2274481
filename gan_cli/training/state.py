"""What a checkpoint saves and a resume restores: `TrainingState` writes itself into a checkpoint and reads itself
back, so a resumed run continues exactly where the saved one stopped (weights, optimizers, schedulers, EMA, loss
scales, fixed noise, the loss's own state, the RNG, and the one count of batches the data stream has given).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from gan_cli.checkpoint import LAST, check_layout, load_checkpoint, malformed, save_checkpoint
from gan_cli.data import DataSpec
from gan_cli.errors import DIVERGED, GanError
from gan_cli.losses import GanLoss
from gan_cli.models import EMA, sample_latent
from gan_cli.rundir import (
    check_resumable,
    record_resume,
)
from gan_cli.runtime import load_state
from gan_cli.training.speed import Precision
from gan_cli.training.tracking import NonFiniteLoss

log = logging.getLogger(__name__)


class TrainingState:
    """Everything a run changes as it trains, and the one place that writes it into a checkpoint and reads it back:
    a resume is `load_state_dict` of what `state_dict` wrote (the RNG last, by `restore_rng`, once set-up is done)."""

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        ema: Optional[EMA],
        opt_g,
        opt_d,
        sched_g,
        sched_d,
        amp: Precision,
        loss: GanLoss,
        fixed_z: torch.Tensor,
        device: torch.device,
    ) -> None:
        self.G, self.D, self.ema = G, D, ema
        self.opt_g, self.opt_d, self.sched_g, self.sched_d = opt_g, opt_d, sched_g, sched_d
        self.amp, self.loss, self.fixed_z, self.device = amp, loss, fixed_z, device
        self.step = 0
        self.batcher: Any = None  # the data stream, once the loop has made it: its count of batches is saved

    def state_dict(self) -> dict[str, Any]:
        ema, device = self.ema, self.device
        return {
            "step": self.step,
            "batches_done": self.batcher.batches_done,
            "models": {
                "G": self.G.state_dict(),
                "D": self.D.state_dict(),
                **({"G_ema": ema.module.state_dict()} if ema else {}),
            },
            "optimizers": {"G": self.opt_g.state_dict(), "D": self.opt_d.state_dict()},
            "schedulers": {"G": self.sched_g.state_dict(), "D": self.sched_d.state_dict()},
            **({"ema_state": ema.state_dict()} if ema else {}),
            "grad_scalers": self.amp.state_dict(),  # fp16 loss scales, so a resumed run does not re-learn them
            "fixed_z": self.fixed_z,
            "loss_state": self.loss.extra.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
        }

    def load_state_dict(self, ckpt: dict[str, Any], path: Path) -> None:
        load_state(self.G, ckpt["models"]["G"], path)
        load_state(self.D, ckpt["models"]["D"], path)
        if self.ema is not None:
            load_state(self.ema.module, ckpt["models"]["G_ema"], path)
            self.ema.load_state_dict(ckpt.get("ema_state", {"updates": ckpt["step"]}))
        self.opt_g.load_state_dict(ckpt["optimizers"]["G"])
        self.opt_d.load_state_dict(ckpt["optimizers"]["D"])
        for sched, key in ((self.sched_g, "G"), (self.sched_d, "D")):
            if key in ckpt.get("schedulers", {}):
                sched.load_state_dict(ckpt["schedulers"][key])
        self.amp.load_state_dict(ckpt.get("grad_scalers", {}))
        self.fixed_z = ckpt["fixed_z"].to(self.device)
        self.loss.extra.load_state_dict(ckpt.get("loss_state", {}))
        self.step = int(ckpt["step"])  # the batch count goes to the data stream the loop makes (make_batcher)

    def restore_rng(self, ckpt: dict[str, Any]) -> None:
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if self.device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"].cpu(), self.device)

    def sampler(self, seed: int) -> nn.Module:
        """The generator samples, scores and checkpoints show: the EMA one (statistics measured anew) when there is one."""
        if self.ema is None:
            return self.G
        self.ema.recompute_norm_stats(lambda n, gen: sample_latent(self.G, n, "cpu", gen), seed=seed)
        return self.ema.module

    def lrs(self) -> dict[str, float]:
        return {"lr/D": self.opt_d.param_groups[0]["lr"], "lr/G": self.opt_g.param_groups[0]["lr"]}

    def check_finite(self) -> None:
        if not all(bool(torch.isfinite(p).all()) for p in (*self.G.parameters(), *self.D.parameters())):
            raise NonFiniteLoss(
                f"the weights became non-finite (nan or inf) in the update of step {self.step}", exit_code=DIVERGED
            )


def resume_into(
    cfg: DictConfig,
    state: TrainingState,
    data,
    run_dir: Path,
    overrides: list[str],
    plain_cfg: dict[str, Any],
    main: bool = True,
) -> dict[str, Any]:
    """Load the checkpoint `resume` names into `state`; the checkpoint (its RNG is restored later, its eval state by the evaluator)."""
    ckpt, path = load_checkpoint(cfg.resume, map_location=state.device)
    check_layout(ckpt, path, resume=True)
    check_resumable(
        ckpt, path, plain_cfg
    )  # the CLI checked this before Hydra started; this guards direct callers of train()
    if data_spec_of(ckpt) != data.spec:  # dataset.root / dataset.path may move, but must hold the same kind of data
        raise GanError(
            f"Cannot resume from {str(path)!r}: the run trained on {data_spec_of(ckpt).describe()}, but the data found now is "
            f"{data.spec.describe()}. Point dataset.root / dataset.path at the run's data."
        )
    try:
        state.load_state_dict(ckpt, path)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # torch's optimizers, schedulers, EMA
        first = (str(exc).splitlines() or [""])[0][:200]
        raise malformed(path, f"its training state does not load ({type(exc).__name__}: {first})") from exc
    log.info("resumed from %s at step %d", path, state.step)
    if main:
        record_resume(run_dir, overrides, plain_cfg, state.step)
    return ckpt


def save_checkpoints(
    state: TrainingState,
    run_dir: Path,
    about_run: dict[str, Any],
    numbered: bool,
    best: bool,
    seed: int,
    keep: Optional[int] = None,
) -> None:
    """last.pt, plus step_NNNNNN.pt when `numbered` and best.pt when `best` (the weights checked finite before).
    `keep` (train.keep_ckpts): once a step checkpoint is written whole, only the newest `keep` of them stay."""
    state.sampler(seed)  # the saved EMA generator carries BatchNorm statistics of its own weights
    payload = {**state.state_dict(), **about_run}
    # last.pt goes last: a process killed while writing the others resumes before this step and writes them again
    if numbered and keep != 0:
        save_checkpoint(payload, run_dir / "checkpoints" / f"step_{state.step:06d}.pt")
        prune_step_checkpoints(run_dir / "checkpoints", keep, state.step)
    if best:
        save_checkpoint(payload, run_dir / "checkpoints" / "best.pt")
    save_checkpoint(payload, run_dir / "checkpoints" / LAST)


def data_spec_of(ckpt: dict[str, Any]) -> DataSpec:
    return DataSpec.from_dict(ckpt["data_spec"])


STEP_CHECKPOINT = re.compile(r"step_(\d{6,})\.pt")  # the names save_checkpoints gives; last.pt and best.pt never match


def prune_step_checkpoints(folder: Path, keep: Optional[int], upto: int) -> list[Path]:
    """Delete all but the newest `keep` step checkpoints of this run (None: keep all). Only files named as gan names
    them (step_NNNNNN.pt), regular files (a link is left alone), and none past step `upto`: a resume from an earlier
    checkpoint leaves the later ones until it writes its own at those steps. The deleted files."""
    if keep is None:
        return []
    steps = []
    for path in folder.iterdir():
        found = STEP_CHECKPOINT.fullmatch(path.name)
        if found and int(found.group(1)) <= upto and path.is_file() and not path.is_symlink():
            steps.append((int(found.group(1)), path))
    doomed = [path for _, path in sorted(steps)[: max(0, len(steps) - keep)]]
    for path in doomed:
        path.unlink(missing_ok=True)
    if doomed:
        log.info("train.keep_ckpts=%d: removed %s", keep, ", ".join(p.name for p in doomed))
    return doomed


# optimizer state per parameter, in tensors of the parameter's size: what a checkpoint holds beside the weights
_OPTIMIZER_SLOTS = {"Adam": 2, "AdamW": 2, "NAdam": 2, "RAdam": 2, "Adamax": 2, "Adagrad": 1, "SGD": 0, "RMSprop": 1}


def checkpoint_bytes(state: TrainingState) -> int:
    """About the size of one checkpoint of `state`, before any step: the models' (and EMA's) tensors, plus the
    optimizers' per-parameter state (made only at their first step) from their kind; an unknown optimizer counts 2."""
    tensors = lambda module: sum(
        t.numel() * t.element_size() for t in module.state_dict().values() if torch.is_tensor(t)
    )  # noqa: E731
    size = tensors(state.G) + tensors(state.D) + (tensors(state.ema.module) if state.ema else 0)
    for opt in (state.opt_g, state.opt_d):
        slots = _OPTIMIZER_SLOTS.get(type(opt).__name__, 2)
        group = opt.param_groups[0]
        slots += int(bool(group.get("momentum"))) + int(bool(group.get("centered"))) + int(bool(group.get("amsgrad")))
        size += slots * sum(p.numel() * p.element_size() for g in opt.param_groups for p in g["params"])
    return size + state.fixed_z.numel() * state.fixed_z.element_size()


def checkpoint_disk_warning(state: TrainingState, folder: Path, tc: DictConfig, best: bool) -> Optional[str]:
    """One line when the checkpoints this run is set to write (step_*.pt every train.ckpt_every steps, at most
    train.keep_ckpts of them at once, plus last.pt, best.pt and a temp copy) would not fit in the free disk space."""
    each = checkpoint_bytes(state)
    numbered = tc.steps // tc.ckpt_every - state.step // tc.ckpt_every
    if tc.keep_ckpts is not None:
        numbered = min(numbered, tc.keep_ckpts + 1)  # the newest kept, and the one written before the oldest goes
    projected = (numbered + 2 + int(best)) * each
    free = shutil.disk_usage(folder).free
    if projected <= free:
        return None
    fits = max(0, free // each - 3 - int(best))  # step checkpoints that fit beside last.pt, best.pt and a temp copy
    every = -(-tc.steps // max(1, fits)) if fits else None
    advice = (
        f"keep only the newest few (train.keep_ckpts={max(1, min(fits - 1, 5))}) or write them less often "
        f"(train.ckpt_every={every})"
        if fits > 1
        else "free some space or point hydra.run.dir at a larger disk"
    )
    return (
        f"checkpoints: {numbered} step checkpoints of about {each / 1e6:,.1f} MB (train.steps={tc.steps}, "
        f"train.ckpt_every={tc.ckpt_every}, train.keep_ckpts={tc.keep_ckpts if tc.keep_ckpts is not None else 'null'}) "
        f"plus last.pt would take about {projected / 1e9:,.2f} GB, more than the {free / 1e9:,.2f} GB free in "
        f"{folder}: {advice}."
    )
