"""The training loop, readable top to bottom.

    for each generator step:
        k = loss.n_critic times:  D step on a real batch and G(z)  (+ penalty, then weight clipping)
        G step on D(G(z))
        scalars into on-device sums; every log_every steps one read, logged and NaN-checked
        fixed-noise samples every sample_every, checkpoint every ckpt_every
        scores every eval.every (metrics.jsonl, checkpoints/best.pt)

The step function holds no global state (models, optimisers and data come in as arguments), so
it can later be wrapped for several devices. `_train` reads in one screen: `_set_up` builds (and so checks)
everything, `_resume` loads a checkpoint into the `TrainingState` whose `state_dict` wrote it, then the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gan_cli.augment import DiffAugment, parse_policy
from gan_cli.checkpoint import LAST, load_checkpoint, save_checkpoint
from gan_cli.config import to_plain
from gan_cli.contracts import check_models
from gan_cli.data import DataSpec, load_dataset, make_batcher
from gan_cli.data.datasets import planned_spec
from gan_cli.distributed import (
    SINGLE,
    DistributedD,
    World,
    agree,
    backend_for,
    join,
    launched_world,
    leave,
    local_batch,
    per_sample,
    quiet_worker_logging,
    shard_device,
    sync_batch_norm,
    unwrap,
    wrap,
)
from gan_cli.errors import DIVERGED, INTERRUPTED, GanError, io_failure
from gan_cli.growth import GrowingBatches, check_growth_run, growth_of, set_growth
from gan_cli.logs import CONSOLE
from gan_cli.losses import GanLoss, build_loss, mutual_info_bound, r1_from_grad
from gan_cli.metrics.in_training import TrainingEval
from gan_cli.models import EMA, build_models, latent_layout, model_label, num_classes, sample_latent
from gan_cli.models.layers import batch_coupled, discriminate, discriminate_pair
from gan_cli.optimizers import build_optimizers
from gan_cli.plots import image_grid, points_figure, save_figure
from gan_cli.rng import seeded_global_rng
from gan_cli.rundir import (
    RunEnd,
    RunLock,
    check_resumable,
    flatten,
    read_status,
    record_resume,
    remove_stale_temp_files,
    resume_command,
    write_status,
)
from gan_cli.runtime import load_state, pick_device, seed_everything, set_threads, update
from gan_cli.schedules import build_schedulers
from gan_cli.speed import FP32, Precision, eager, enable_backend_speedups, plan_speed, prepare_models
from gan_cli.tracking import NonFiniteLoss, Tracker
from gan_cli.train_pyramid import check_pyramid_run, is_pyramid, pyramid_step

log = logging.getLogger("gan_cli")


# ---------------------------------------------------------------------------------------------
# one generator step (and its k discriminator steps)
# ---------------------------------------------------------------------------------------------
def train_step(
    G: nn.Module,
    D: nn.Module,
    loss: GanLoss,
    opt_g,
    opt_d,
    batcher,
    device: torch.device,
    amp: Precision = FP32,
    augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    step: int = 1,
    joint: bool = False,
) -> dict[str, torch.Tensor]:
    """One generator step; G and D may be torch.compile wrappers (the penalty then runs on the eager D,
    since compiled code cannot differentiate twice). `amp` adds autocast and fp16 loss scaling.

    `augment` (DiffAugment) is applied to every batch D sees, real and fake, in D's step and in G's:
    D then never sees an un-augmented image, and G's gradient flows back through the same random ops.

    `step` (counted from 1) places the D steps on one global count, so a lazy penalty (`loss.penalty_every`)
    falls on the same D steps whether or not the run was resumed in between.

    `joint` (train.d_pass=joint): D scores [real; fake] in one pass, and R1 comes from that pass (check_d_pass
    has made sure D scores each sample on its own, so only the order of float sums differs from two passes).
    """
    G_net, D_judge = unwrap(G), unwrap(D)  # G's step judges with D outside DDP (a compiled D stays compiled)
    obj, extra, layout = loss.objective, loss.extra, latent_layout(G_net)
    seen_by_d = augment or (lambda x: x)
    penalty = None
    for i in range(loss.n_critic):
        d_step = (step - 1) * loss.n_critic + i
        real, y = batcher.next()
        z = per_sample(
            lambda n: sample_latent(G_net, n, device), len(real)
        )  # a distributed run: this rank's slice of the global draw
        last = i == loss.n_critic - 1
        due = loss.penalty_due(d_step)
        r1_in_pass = (
            joint and due and loss.penalty_from_pass and eager(D) is D
        )  # a compiled D cannot differentiate twice
        opt_d.zero_grad(set_to_none=True)
        with amp.autocast():
            with torch.set_grad_enabled(last):  # the last fake batch is kept, with its graph, for the G step
                fake = G(z, y)
            real, fake_d = seen_by_d(real), seen_by_d(fake.detach())
            if joint:
                (real_logits, real_ex), (fake_logits, fake_ex), both = discriminate_pair(
                    D, real, fake_d, y, input_grad=r1_in_pass
                )
            else:
                real_logits, real_ex = discriminate(D, real, y)
                fake_logits, fake_ex = discriminate(D, fake_d, y)
            d_loss = obj.d_loss(real_logits, fake_logits)
            d_terms = extra.d_terms(
                unwrap(D), layout, real_ex, fake_ex, y, z, real_logits
            )  # ACGAN, InfoGAN, historical averaging, drift
            total = d_loss + sum(d_terms.values())
            if due:
                if r1_in_pass:
                    penalty = r1_from_grad(amp.input_grad(real_logits, both)[: len(real)])
                else:
                    penalty = loss.penalty(amp.penalty_fn(lambda x: eager(D)(x, y)), real, fake_d)
                total = total + loss.penalty_every * loss.penalty_weight * penalty
        d_grad = update(amp, "D", opt_d, total, D, measure=last)
        loss.clip_weights(D)

    opt_g.zero_grad(set_to_none=True)
    D.requires_grad_(False)  # G's update needs no gradient for D's weights
    with amp.autocast():
        g_logits, g_ex = discriminate(D_judge, seen_by_d(fake), y)
        if extra.feature_matching:  # real features from the D that G is judged by now, after its update
            with torch.no_grad():
                _, real_ex = discriminate(D_judge, real, y)
        g_loss = extra.g_adversarial(obj, g_logits, g_ex, real_ex)  # the objective's, or feature matching
        g_terms = extra.g_terms(G_net, layout, g_ex, y, z)  # ACGAN, InfoGAN, historical averaging, orthogonal reg.
    g_grad = update(amp, "G", opt_g, g_loss + sum(g_terms.values()), G)
    D.requires_grad_(True)

    stats = {
        "loss/D": total.detach(),
        "loss/G": g_loss.detach(),
        "D(x)": obj.d_output(real_logits.detach()).mean(),
        "D(G(z))": obj.d_output(fake_logits.detach()).mean(),
        "D(G(z))/g_step": obj.d_output(g_logits.detach()).mean(),
        "grad_norm/D": d_grad,
        "grad_norm/G": g_grad,
        obj.estimate_tag: obj.estimate(real_logits.detach(), fake_logits.detach(), d_loss.detach()),
    }
    if loss.penalty is not None:
        # A lazy penalty is logged when it ran and as 0 otherwise (weighted by penalty_every, the mean is the pull)
        stats["loss/penalty"] = (
            penalty.detach() * loss.penalty_every if penalty is not None else torch.zeros((), device=device)
        )
    stats.update({k: v.detach() for k, v in {**d_terms, **g_terms}.items()})
    if "q_cat" in g_ex:
        stats["estimate/mutual_info"] = mutual_info_bound(g_ex, z, layout).detach()
    stats.update(amp.overflow_flag(d_grad, g_grad))
    return stats


# ---------------------------------------------------------------------------------------------
# checkpoints and samples
# ---------------------------------------------------------------------------------------------
def write_samples(
    G: nn.Module, D: nn.Module, fixed_z: torch.Tensor, data, step: int, run_dir: Path, tracker: Tracker
) -> None:
    """The fixed-noise batch as a PNG under samples/ and in TensorBoard (a plot for toy data)."""
    was_training = G.training
    G.eval()
    with torch.no_grad(), seeded_global_rng(0, fixed_z.device):  # the same noise inputs (model=style) in every picture
        fake = G(fixed_z)
    G.train(was_training)
    path = run_dir / "samples" / f"step_{step:06d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if data.spec.is_image:
        from torchvision.utils import save_image

        grid = image_grid(fake)
        save_image(grid, path)
        tracker.image("samples", grid, step)
    else:
        real = data.x[: len(fake) * 8].cpu()
        with torch.no_grad():
            d_fn = (lambda xs: torch.sigmoid(D(xs.to(fixed_z.device))).squeeze()) if data.spec.shape == (1,) else None
            fig = points_figure(fake, real, d_fn, title=f"{data.spec.name}, step {step}")
        tracker.figure("samples", fig, step)
        save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
class StopRequest:
    """SIGINT/SIGTERM/SIGUSR2 ask the loop to stop at the end of the current step (a second Ctrl-C stops at once).

    `patient`: a process of a distributed run, where Ctrl-C reaches every worker and then the launcher passes the
    signal on again: the workers keep the first request, agree on a step to stop at, save once and exit (the launcher
    kills them if that takes too long)."""

    def __init__(self, patient: bool = False) -> None:
        self.signal: Optional[int] = None
        self.patient = patient
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            if self.patient:
                return
            raise KeyboardInterrupt
        self.signal = signum

    def __enter__(self) -> StopRequest:
        # SIGUSR2: what Slurm (through submitit's signal_delay_s) sends ahead of a job's time limit
        for sig in (signal.SIGINT, signal.SIGTERM, *([signal.SIGUSR2] if hasattr(signal, "SIGUSR2") else [])):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


MAX_STEPS = 10**9  # a billion generator steps: days at the fastest; anything larger is a typo


def check_options(cfg: DictConfig) -> None:
    """Every option that can be checked without reading the data, checked by building what it configures:
    the CLI calls this before Hydra makes a run directory, so a rejected command leaves nothing behind."""
    _check_train_settings(cfg.train)
    _check_dist(cfg.dist, cfg.train.batch_size)
    check_pyramid_run(cfg)
    check_growth_run(cfg)
    loss = build_loss(cfg.loss)
    spec = planned_spec(cfg.dataset)
    _build_augment(cfg.train.augment, spec.is_image if spec is not None else True)
    if spec is None:  # image_folder: its shape and classes are known once the folder is read
        return
    G, D = build_models(cfg.model, spec)
    check_models(G, D, spec, cfg.model.pack, model_label(cfg.model))
    check_d_pass(cfg.train.d_pass, D)
    loss.extra.check_fits(D)
    opt_g, opt_d = build_optimizers(cfg.optimizer, G, D)
    build_schedulers(cfg.optimizer, cfg.train.steps, opt_g, opt_d)
    if cfg.model.ema != 0:
        EMA(G, cfg.model.ema, cfg.model.ema_warmup)


def _check_train_settings(cfg) -> None:
    for key in ("steps", "batch_size", "log_every", "sample_every", "ckpt_every", "n_samples"):
        if cfg[key] < 1:
            raise GanError(f"train.{key}={cfg[key]} must be a positive integer.")
    for key in ("steps", "log_every", "sample_every", "ckpt_every"):
        if cfg[key] > MAX_STEPS:
            raise GanError(
                f"train.{key}={str(cfg[key])[:20]}{'...' if len(str(cfg[key])) > 20 else ''} is more than {MAX_STEPS:,} steps; give a number of steps up to that."
            )
    if cfg.num_workers < 0:
        raise GanError(f"train.num_workers={cfg.num_workers} must be >= 0.")
    if cfg.threads is not None and cfg.threads < 1:
        raise GanError(f"train.threads={cfg.threads} must be a positive number of threads, or null (chosen for you).")


def check_d_pass(d_pass: str, D: nn.Module) -> None:
    """train.d_pass=joint gives the logits of two passes only if D scores each sample on its own."""
    coupled = batch_coupled(D) if d_pass == "joint" else []
    if coupled:
        raise GanError(
            f"train.d_pass=joint scores [real; fake] in one pass of D, which equals two passes only when D scores each sample on "
            f"its own; this D has {', '.join(coupled)}, whose output for a sample depends on the rest of its batch "
            f"(model.d_norm=batch, model.minibatch=mbdisc|mbstd, model=progan's minibatch std-dev). Use train.d_pass=separate, "
            f"or a per-sample D (model.d_norm=layer|spectral|none, model.minibatch=none)."
        )


def _check_dist(cfg, batch_size: int) -> None:
    if cfg.nproc_per_node < 1:
        raise GanError(
            f"dist.nproc_per_node={cfg.nproc_per_node} must be a positive number of processes (1 = one process, N = one per GPU)."
        )
    if not cfg.timeout > 0:
        raise GanError(f"dist.timeout={cfg.timeout} must be a positive number of seconds.")
    local_batch(batch_size, World(size=int(cfg.nproc_per_node)))


def train(
    cfg: DictConfig, run_dir: Path, overrides: list[str], hparam_choices: dict[str, Any], parallel_jobs: int = 1
) -> float:
    """Train as `cfg` says, writing everything into `run_dir`, which no other process may train in meanwhile.
    `parallel_jobs`: how many runs a sweep launcher trains side by side (they share the CPU cores).

    Returns the last value of the chosen score (eval.best) when eval.every > 0, else the final
    generator loss: the number a Hydra sweeper optimises. However it ends, `<run>/status.json` says how.
    """
    _check_train_settings(cfg.train)
    _check_dist(cfg.dist, cfg.train.batch_size)
    world = launched_world() or SINGLE
    if not world.distributed and cfg.dist.nproc_per_node > 1:  # this process launches the workers and waits for them
        return _launch_workers(cfg, run_dir, overrides, hparam_choices, parallel_jobs)
    quiet_worker_logging(world)
    with RunLock(run_dir) if world.main else contextlib.nullcontext():  # rank 0 holds the run directory for all
        t0 = time.perf_counter()
        earlier = float(read_status(run_dir).get("seconds", 0.0)) if cfg.resume else 0.0
        end = RunEnd(steps=int(cfg.train.steps))
        try:
            result = _train(cfg, run_dir, overrides, hparam_choices, end, parallel_jobs, world)
            end.status, end.exit_code = "finished", 0
            return result
        except GanError as err:
            end.ended_by(err)
            raise
        except OSError as err:  # disk full, a folder made read-only, an unreadable image: not a bug in gan
            last = run_dir / "checkpoints" / LAST
            after = (
                f"{last} holds the last complete state; fix the cause, then continue with: {resume_command(run_dir)}"
                if last.is_file()
                else "No checkpoint had been written yet."
            )
            failure = io_failure(err, "Training", after)
            end.ended_by(failure)
            raise failure from err
        finally:
            end.seconds = round(earlier + time.perf_counter() - t0, 2)
            leave()
            try:
                if world.main:
                    write_status(run_dir, end)
            except OSError as err:  # the disk that stopped the run may not take this file either
                log.warning("could not write %s: %s", run_dir / "status.json", err)


def _launch_workers(
    cfg: DictConfig, run_dir: Path, overrides: list[str], hparam_choices: dict[str, Any], parallel_jobs: int
) -> float:
    """`dist.nproc_per_node=N`: N workers on this machine, started by torch's elastic launcher, train in `run_dir`."""
    from hydra.core.hydra_config import HydraConfig

    from gan_cli.distributed import launch_local

    logging_config = (
        OmegaConf.to_container(HydraConfig.get().job_logging, resolve=True) if HydraConfig.initialized() else None
    )
    job = {
        "config": to_plain(cfg),
        "run_dir": str(run_dir),
        "overrides": list(overrides),
        "choices": dict(hparam_choices),
        "parallel": parallel_jobs,
        "logging": logging_config,
    }
    log.info("starting %d processes (dist.nproc_per_node) in %s", cfg.dist.nproc_per_node, run_dir, extra=CONSOLE)
    return launch_local(int(cfg.dist.nproc_per_node), run_dir, job, shutdown_timeout=120)


def check_writable(run_dir: Path) -> None:
    """Write and delete a probe file in the run directory and in checkpoints/ now, not at the first save an hour in."""
    for folder in (run_dir, run_dir / "checkpoints"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write_test.{os.getpid()}"
            probe.write_bytes(b"gan")
            probe.unlink()
        except OSError as err:
            raise io_failure(
                err, f"Writing to {str(folder)!r}", "Pick a writable folder (hydra.run.dir=...) or fix this one."
            ) from err


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
        self.step = self.batches_done = 0

    def state_dict(self, batches_done: int) -> dict[str, Any]:
        ema, device = self.ema, self.device
        return {
            "step": self.step,
            "batches_done": batches_done,
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
        self.step, self.batches_done = int(ckpt["step"]), int(ckpt["batches_done"])

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


def _set_up(cfg: DictConfig, run_dir: Path, parallel_jobs: int, world: World = SINGLE):
    """(data, training state, the models the step runs (compiled, wrapped in DDP, or as built), DiffAugment, the speed plan):
    every option is built, and so checked, before the run directory's checkpoints/ is touched."""
    check_pyramid_run(cfg, world.size)
    check_growth_run(cfg, world.size)
    device = shard_device(world, pick_device(cfg.device))
    _, why = set_threads(cfg.train.threads, parallel_jobs * world.local_size)
    if world.distributed:
        local_batch(cfg.train.batch_size, world)
        join(world, backend_for(str(cfg.dist.backend), device), float(cfg.dist.timeout))
    seed_everything(cfg.seed)  # the same stream on every rank: per_sample cuts the global draws into shards
    data = load_dataset(cfg.dataset, cfg.seed)
    if cfg.train.batch_size > len(data):  # also keeps a mistyped batch of 10^11 from paging memory in for minutes
        raise GanError(
            f"train.batch_size={cfg.train.batch_size} is larger than the dataset ({len(data):,} examples): every batch would hold "
            f"some examples twice. Lower train.batch_size, or use more data (dataset.limit; dataset.n for the toys)."
        )
    G, D = build_models(cfg.model, data.spec)
    G.to(device)
    D.to(device)
    check_models(
        G, D, data.spec, cfg.model.pack, model_label(cfg.model)
    )  # image_folder's shape is known only now; on its own random stream
    check_d_pass(cfg.train.d_pass, D)
    plan = plan_speed(cfg.train, device, data.spec.is_image, data.x.nbytes if data.x is not None else 0)
    if plan.compile and (
        world.distributed or growth_of(cfg, G)
    ):  # DDP's gradient hooks, a G whose graph changes every step: eager
        plan = dataclasses.replace(plan, compile=False)
    enable_backend_speedups(device)
    runners = prepare_models(G, D, plan)
    amp = Precision(plan.amp, device)
    log.info("speed paths: %s threads=%d (%s)", plan.describe(), torch.get_num_threads(), why, extra=CONSOLE)
    loss = build_loss(cfg.loss)
    loss.extra.check_fits(D)
    if loss.penalty is not None and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules()):
        log.warning(
            "loss.penalty=%s with BatchNorm in D: the penalty assumes per-sample outputs; consider model.d_norm=layer",
            cfg.loss.penalty,
        )
    opt_g, opt_d = build_optimizers(cfg.optimizer, G, D)
    sched_g, sched_d = build_schedulers(cfg.optimizer, cfg.train.steps, opt_g, opt_d)
    augment = _build_augment(cfg.train.augment, data.spec.is_image)
    ema = (
        EMA(G, cfg.model.ema, cfg.model.ema_warmup) if cfg.model.ema != 0 else None
    )  # EMA refuses a decay outside (0, 1)
    if (
        world.distributed
    ):  # after the EMA's copy, which measures its BatchNorm statistics on rank 0 alone, so must not sync
        (G, D), sync_bn = sync_batch_norm(
            str(cfg.dist.sync_bn), (G, D), device, world
        )  # the same weight tensors: optimizers keep them
        runners = (wrap(G, device), DistributedD(D, device))
        log.info(
            "distributed: %d processes (%s), %d samples per process, sync_bn %s",
            world.size,
            backend_for(str(cfg.dist.backend), device),
            cfg.train.batch_size // world.size,
            sync_bn,
            extra=CONSOLE,
        )
    # every option is checked by now: only a run that can start touches checkpoints/
    stale = []
    if world.main:
        check_writable(run_dir)
        stale = remove_stale_temp_files(run_dir)  # safe: this process holds the run directory's lock
    if stale:
        log.info("removed %d temp file(s) a killed checkpoint write left in %s", len(stale), run_dir / "checkpoints")
    fixed_z = sample_latent(G, cfg.train.n_samples, device)
    state = TrainingState(G, D, ema, opt_g, opt_d, sched_g, sched_d, amp, loss, fixed_z, device)
    return data, state, runners, augment, plan


def _resume(
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


def _save(
    state: TrainingState,
    run_dir: Path,
    batches_done: int,
    about_run: dict[str, Any],
    numbered: bool,
    best: bool,
    seed: int,
) -> None:
    """last.pt, plus step_NNNNNN.pt when `numbered` and best.pt when `best` (the weights checked finite before)."""
    state.sampler(seed)  # the saved EMA generator carries BatchNorm statistics of its own weights
    payload = {**state.state_dict(batches_done), **about_run}
    # last.pt goes last: a process killed while writing the others resumes before this step and writes them again
    if numbered:
        save_checkpoint(payload, run_dir / "checkpoints" / f"step_{state.step:06d}.pt")
    if best:
        save_checkpoint(payload, run_dir / "checkpoints" / "best.pt")
    save_checkpoint(payload, run_dir / "checkpoints" / LAST)


def _train(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    hparam_choices: dict[str, Any],
    end: RunEnd,
    parallel_jobs: int,
    world: World = SINGLE,
) -> float:
    data, state, (G_run, D_run), augment, plan = _set_up(cfg, run_dir, parallel_jobs, world)
    plain_cfg = to_plain(cfg)
    ckpt = _resume(cfg, state, data, run_dir, overrides, plain_cfg, world.main) if cfg.resume else None
    start_step = end.step = state.step
    batcher = make_batcher(
        data,
        cfg.train.batch_size,
        state.device,
        cfg.seed,
        cfg.train.num_workers,
        start_batch=state.batches_done,
        on_device=plan.data_on_device,
        shard=(world.rank, world.size),
    )
    scores_cfg = (
        cfg.eval if world.main else OmegaConf.merge(cfg.eval, {"every": 0})
    )  # rank 0 scores; the others wait at the next step
    evaluator = TrainingEval(
        scores_cfg,
        cfg.dataset,
        data,
        run_dir,
        state.device,
        state.loss.objective.outputs_probability,
        ckpt.get("eval") if ckpt else None,
        classes=num_classes(state.G),
    )
    tracker = Tracker(run_dir, cfg.train.steps, start_step, writes=world.main)
    tracker.text("config", "```yaml\n" + OmegaConf.to_yaml(cfg) + "```")
    if (
        ckpt is not None
    ):  # last, so that nothing built above (the evaluator's classifier, say) draws from the restored stream
        state.restore_rng(ckpt)
    last_saved = start_step if ckpt else None
    growth = growth_of(cfg, state.G)  # model=progan: the stage and alpha of each step, and real batches at its side
    if growth is not None:
        batcher = GrowingBatches(batcher, state.D)
    progress: dict[str, float] = {}
    step_values = state.lrs()  # logged as they are: the learning rates of the step just done (the schedulers move on right after it), progress/*
    step, status, tc = start_step, "failed", cfg.train  # until the loop ends or a known stop names it
    try:
        # model=lapgan trains each level of its pyramid (check_pyramid_run refused d_pass=joint for it)
        step_fn = pyramid_step if is_pyramid(G_run) else functools.partial(train_step, joint=tc.d_pass == "joint")
        with StopRequest(patient=world.distributed) as stop:
            for step in range(start_step + 1, tc.steps + 1):
                if growth is not None:
                    progress = set_growth(growth, step, state.G, state.D, *([state.ema.module] if state.ema else []))
                state.loss.extra.at_step(step, tc.steps)  # loss.info_schedule
                tracker.add(
                    step,
                    step_fn(
                        G_run,
                        D_run,
                        state.loss,
                        state.opt_g,
                        state.opt_d,
                        batcher,
                        state.device,
                        state.amp,
                        augment,
                        step,
                    ),
                )
                state.step, step_values = step, {**state.lrs(), **state.loss.extra.scheduled(), **progress}
                state.sched_g.step()
                state.sched_d.step()
                if state.ema is not None:
                    state.ema.update(state.G)
                is_last = step == tc.steps
                # every rank takes the same branches (the flushes are collectives); a distributed run agrees on a stop
                # request when it logs, a single process stops at the end of the step the signal came in
                logs = step % tc.log_every == 0 or is_last or (stop.signal is not None and not world.distributed)
                if logs:
                    tracker.flush(step, step_values)
                else:
                    tracker.advance(step)
                stopping = logs and agree(
                    stop.signal is not None, state.device
                )  # one process: logs whenever a signal came
                if (step % tc.sample_every == 0 or is_last) and world.main:
                    write_samples(state.sampler(cfg.seed), state.D, state.fixed_z, data, step, run_dir, tracker)
                best = False
                if TrainingEval.is_due(int(cfg.eval.every), step, is_last):
                    tracker.flush(step, step_values)  # never score (or keep as best) weights that went NaN
                    if evaluator.enabled:
                        best = evaluator.run(step, state.sampler(cfg.seed), state.D, tracker)
                if step % tc.ckpt_every == 0 or is_last or stopping or best:  # best: rank 0 only, whose flush just ran
                    tracker.flush(step, step_values)  # never write a checkpoint with NaN weights
                    state.check_finite()
                    if world.main:
                        about_run = {
                            "config": plain_cfg,
                            "overrides": list(overrides),
                            "data_spec": data.spec.to_dict(),
                            "eval": evaluator.state(),
                        }
                        _save(
                            state,
                            run_dir,
                            batcher.batches_done,
                            about_run,
                            numbered=step % tc.ckpt_every == 0,
                            best=best,
                            seed=cfg.seed,
                        )
                    last_saved = step
                if stopping:
                    status = "interrupted"
                    raise GanError(
                        f"{signal.Signals(stop.signal or signal.SIGTERM).name} received: stopped at step {step} of {tc.steps} and saved "
                        f"{run_dir / 'checkpoints' / LAST}. Continue with: {resume_command(run_dir)}",
                        exit_code=INTERRUPTED,
                    )
            status = "finished"
    except NonFiniteLoss as err:
        status = "diverged"
        kept = (
            f"{run_dir / 'checkpoints' / LAST} still holds the last good state (step {last_saved})"
            if last_saved is not None
            else "no checkpoint had been written yet"
        )
        raise GanError(
            f"Training diverged: {err}. The run stopped and {kept}. Try a lower learning rate (optimizer.lr), "
            f"a gradient penalty (loss=wgan_gp) or another loss.",
            exit_code=DIVERGED,
        ) from err
    except GanError:
        status = "interrupted" if status == "interrupted" else "stopped"
        raise
    except OSError:
        status = "failed"
        raise
    finally:
        end.step, end.final = step, dict(tracker.latest)
        tracker.finish(_hparams(hparam_choices, plain_cfg), step, status)
    final = evaluator.final()
    return final if final is not None else tracker.latest.get("loss/G", float("nan"))


def _build_augment(policy: list[str], is_image: bool) -> Optional[DiffAugment]:
    ops = parse_policy(",".join(policy))
    if not ops:
        return None
    if not is_image:
        raise GanError(
            f"train.augment=[{','.join(policy)}] augments images (DiffAugment), but this dataset holds points. Use train.augment=[]."
        )
    return DiffAugment(ops)


def _hparams(choices: dict[str, Any], plain_cfg: dict[str, Any]) -> dict[str, Any]:
    """Flat hyper-parameters for TensorBoard's HParams tab: group choices plus every scalar option."""
    values: dict[str, Any] = {k: str(v) for k, v in choices.items() if v is not None and not k.startswith("hydra")}
    for k, v in flatten(plain_cfg).items():
        if isinstance(v, (bool, int, float, str)):
            values[k] = v
        elif isinstance(v, list):
            values[k] = str(v)
    return values


def data_spec_of(ckpt: dict[str, Any]) -> DataSpec:
    return DataSpec.from_dict(ckpt["data_spec"])
