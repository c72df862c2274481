"""What a checkpoint saves and a resume restores: `TrainingState` writes itself into a checkpoint and reads itself
back, so a resumed run continues exactly where the saved one stopped (weights, optimizers, schedulers, EMA, loss
scales, fixed noise, the loss's own state, the RNG, and the one count of batches the data stream has given).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from gan_cli.checkpoint import LAST, load_checkpoint, save_checkpoint
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
    check_resumable(
        ckpt, path, plain_cfg
    )  # the CLI checked this before Hydra started; this guards direct callers of train()
    if data_spec_of(ckpt) != data.spec:  # dataset.root / dataset.path may move, but must hold the same kind of data
        raise GanError(
            f"Cannot resume from {str(path)!r}: the run trained on {data_spec_of(ckpt).describe()}, but the data found now is "
            f"{data.spec.describe()}. Point dataset.root / dataset.path at the run's data."
        )
    state.load_state_dict(ckpt, path)
    log.info("resumed from %s at step %d", path, state.step)
    if main:
        record_resume(run_dir, overrides, plain_cfg, state.step)
    return ckpt


def save_checkpoints(
    state: TrainingState, run_dir: Path, about_run: dict[str, Any], numbered: bool, best: bool, seed: int
) -> None:
    """last.pt, plus step_NNNNNN.pt when `numbered` and best.pt when `best` (the weights checked finite before)."""
    state.sampler(seed)  # the saved EMA generator carries BatchNorm statistics of its own weights
    payload = {**state.state_dict(), **about_run}
    # last.pt goes last: a process killed while writing the others resumes before this step and writes them again
    if numbered:
        save_checkpoint(payload, run_dir / "checkpoints" / f"step_{state.step:06d}.pt")
    if best:
        save_checkpoint(payload, run_dir / "checkpoints" / "best.pt")
    save_checkpoint(payload, run_dir / "checkpoints" / LAST)


def data_spec_of(ckpt: dict[str, Any]) -> DataSpec:
    return DataSpec.from_dict(ckpt["data_spec"])
