"""The training loop, readable top to bottom.

    for each generator step:
        k = loss.n_critic times:  D step on a real batch and G(z)  (+ penalty, then weight clipping)
        G step on D(G(z))
        scalars into on-device sums; every log_every steps one read, logged and NaN-checked
        fixed-noise samples every sample_every, checkpoint every ckpt_every
        scores every eval.every (metrics.jsonl, checkpoints/best.pt)

`run_loop` reads in one screen, in the sections of stylegan2-ada's training loop: set-up and resume (`_start`:
`set_up` builds, and so checks, everything; `resume_into` loads a checkpoint into the `TrainingState` whose
`state_dict` wrote it), the step (`_train_one`), and the tick (`_tick`: logs, samples, scores, checkpoints).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import signal
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gan_cli.checkpoint import LAST
from gan_cli.config import to_plain
from gan_cli.data import make_batcher
from gan_cli.errors import DIVERGED, INTERRUPTED, GanError, blame
from gan_cli.metrics.in_training import TrainingEval
from gan_cli.models import scored_classes
from gan_cli.parallel import (
    SINGLE,
    World,
    agree,
)
from gan_cli.plots import image_grid, points_figure, save_figure, save_grid
from gan_cli.rng import seeded_global_rng
from gan_cli.rundir import (
    RunEnd,
    flatten,
    read_status,
    resume_command,
)
from gan_cli.runtime import generate
from gan_cli.training.growth import GrowingBatches, growth_of, set_growth
from gan_cli.training.health import Health
from gan_cli.training.pyramid import is_pyramid, pyramid_step
from gan_cli.training.setup import set_up
from gan_cli.training.state import TrainingState, checkpoint_disk_warning, resume_into, save_checkpoints
from gan_cli.training.step import train_step
from gan_cli.training.tracking import NonFiniteLoss, Tracker, options_read

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# checkpoints and samples
# ---------------------------------------------------------------------------------------------
def write_samples(
    G: nn.Module, D: nn.Module, fixed_z: torch.Tensor, data, step: int, run_dir: Path, tracker: Tracker
) -> torch.Tensor:
    """The fixed-noise batch as a PNG under samples/ and in TensorBoard (a plot for toy data); the batch, for the
    health detectors."""
    was_training = G.training
    G.eval()
    try:  # the same noise inputs (model=style) in every picture
        with torch.no_grad(), seeded_global_rng(0, fixed_z.device):
            fake = G(fixed_z)
        grid = image_grid(fake) if data.spec.is_image else None
    except (RuntimeError, MemoryError) as exc:  # the whole fixed-noise batch goes through G at once, then into one grid
        blame(exc, f"train.n_samples (now {len(fixed_z):,}, the fixed-noise samples drawn at once for each grid)")
        raise
    G.train(was_training)
    path = run_dir / "samples" / f"step_{step:06d}.png"  # replaced (temp file, rename), never written through a link
    if grid is not None:
        save_grid(grid, path)
        tracker.image("samples", grid, step)
    else:
        real = data.x[: len(fake) * 8].cpu()
        with torch.no_grad():
            d_fn = (lambda xs: torch.sigmoid(D(xs.to(fixed_z.device))).squeeze()) if data.spec.shape == (1,) else None
            fig = points_figure(fake, real, d_fn, title=f"{data.spec.name}, step {step}")
        tracker.figure("samples", fig, step)
        save_figure(fig, path)
    return fake


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


@dataclasses.dataclass
class Session:
    """What the loop's sections share: the parts `set_up` built, the batches, the scores, the logs, and what the
    run has done so far."""

    cfg: DictConfig
    run_dir: Path
    world: World
    data: Any
    state: TrainingState
    runners: tuple[nn.Module, nn.Module]  # G and D as the step runs them (compiled, wrapped in DDP, or as built)
    augment: Any
    batcher: Any
    evaluator: TrainingEval
    tracker: Tracker
    about_run: dict[str, Any]  # what a checkpoint says of the run besides its state (config, overrides, data)
    growth: Any = None
    health: Optional[Health] = None  # train.health=on, rank 0
    last_saved: Optional[int] = None
    progress: dict[str, float] = dataclasses.field(default_factory=dict)
    step_values: dict[str, float] = dataclasses.field(default_factory=dict)


def run_loop(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    hparam_choices: dict[str, Any],
    end: RunEnd,
    parallel_jobs: int,
    world: World = SINGLE,
    started: Optional[Callable[[int], None]] = None,
    job: Optional[int] = None,
) -> float:
    """`started(step)`: called once set-up is done and a resume accepted, before the first step. `job`: a sweep's job
    number, shown on every progress line."""
    run = _start(cfg, run_dir, overrides, parallel_jobs, world, job)
    step = end.step = run.state.step
    if started is not None:
        started(step)
    status, tc = "failed", cfg.train  # until the loop ends or a known stop names it
    # model=lapgan trains each level of its pyramid (check_pyramid_run refused d_pass=joint for it)
    step_fn = pyramid_step if is_pyramid(run.runners[0]) else functools.partial(train_step, joint=tc.d_pass == "joint")
    try:
        with StopRequest(patient=world.distributed) as stop:
            for step in range(run.state.step + 1, tc.steps + 1):
                _train_one(run, step_fn, step)
                if _tick(run, step, stop):
                    status = "interrupted"
                    raise GanError(
                        f"{signal.Signals(stop.signal or signal.SIGTERM).name} received: stopped at step {step} of {tc.steps} and saved "
                        f"{run_dir / 'checkpoints' / LAST}. Continue with: {resume_command(run_dir)}",
                        exit_code=INTERRUPTED,
                    )
            status = "finished"
    except NonFiniteLoss as err:
        status = "diverged"
        step = err.step if err.step is not None else step  # where it went non-finite, not the log that found it
        kept = (
            f"{run_dir / 'checkpoints' / LAST} still holds the last good state (step {run.last_saved})"
            if run.last_saved is not None
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
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, without saving
        status = "interrupted"
        raise
    finally:
        end.step, end.final = step, dict(run.tracker.latest)
        end.warnings = list(run.health.warnings) if run.health is not None else None
        run.tracker.finish(hparams(hparam_choices, run.about_run["config"]), step, status)
    final = run.evaluator.final()
    return final if final is not None else run.tracker.latest.get("loss/G", float("nan"))


# ---------------------------------------------------------------------------------------------
# set-up and resume
# ---------------------------------------------------------------------------------------------
def _start(
    cfg: DictConfig, run_dir: Path, overrides: list[str], parallel_jobs: int, world: World, job: Optional[int] = None
) -> Session:
    """Every part built (and so checked), the checkpoint loaded when resuming, the batches, scores and logs ready."""
    data, state, runners, augment, plan = set_up(cfg, run_dir, parallel_jobs, world)
    plain_cfg = to_plain(cfg)
    ckpt = resume_into(cfg, state, data, run_dir, overrides, plain_cfg, world.main) if cfg.resume else None
    disk = checkpoint_disk_warning(state, run_dir, cfg.train, cfg.eval.every > 0) if world.main else None
    if disk:
        log.warning("%s", disk)
    batcher = make_batcher(
        data,
        cfg.train.batch_size,
        state.device,
        cfg.seed,
        cfg.train.num_workers,
        start_batch=int(ckpt["batches_done"]) if ckpt else 0,
        on_device=plan.data_on_device,
        shard=(world.rank, world.size),
    )
    # rank 0 scores; the others wait at the next step
    scores_cfg = cfg.eval if world.main else OmegaConf.merge(cfg.eval, {"every": 0})
    previous_eval = ckpt.get("eval") if ckpt else None
    evaluator = TrainingEval(
        scores_cfg,
        cfg.dataset,
        data.as_loaded,  # scores compare against the data's own classes, not the clusters G may condition on
        run_dir,
        state.device,
        state.loss.objective.outputs_probability,
        previous_eval,
        classes=scored_classes(state.G, data.spec),
    )
    tracker = Tracker(run_dir, cfg.train.steps, state.step, writes=world.main, job=job)
    tracker.text("config", config_text(plain_cfg))
    if (
        ckpt is not None
    ):  # last, so that nothing built above (the evaluator's classifier, say) draws from the restored stream
        state.restore_rng(ckpt)
    growth = growth_of(cfg, state.G)  # model=progan: the stage and alpha of each step, and real batches at its side
    if growth is not None:
        batcher = GrowingBatches(batcher, state.D)
    state.batcher = batcher  # the one count of batches a checkpoint saves
    about_run = {"config": plain_cfg, "overrides": list(overrides), "data_spec": data.spec.to_dict()}
    health = None
    if cfg.train.health and world.main:  # it reads what rank 0 logs; earlier attempts' warnings carry on
        earlier = read_status(run_dir).get("warnings") if cfg.resume else None
        earlier = earlier if isinstance(earlier, list) else None
        health = Health(cfg, options_read(plain_cfg), data, state.loss.objective.outputs_probability, run_dir, earlier)
    return Session(cfg, run_dir, world, data, state, runners, augment, batcher, evaluator, tracker, about_run, growth,
                   health=health,
                   last_saved=state.step if ckpt else None,
                   # logged as they are: the learning rates of the step just done (the schedulers move on right after it)
                   step_values=state.lrs())  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the step
# ---------------------------------------------------------------------------------------------
def _train_one(run: Session, step_fn, step: int) -> None:
    """One generator step (and its D steps), then the schedules and the average that follow it."""
    state, (G_run, D_run) = run.state, run.runners
    if run.growth is not None:
        run.progress = set_growth(run.growth, step, state.G, state.D, *([state.ema.module] if state.ema else []))
    state.loss.extra.at_step(step, run.cfg.train.steps)  # loss.info_schedule
    stats = step_fn(
        G_run, D_run, state.loss, state.opt_g, state.opt_d, run.batcher, state.device, state.amp, run.augment, step
    )
    run.tracker.add(step, stats)
    state.step, run.step_values = step, {**state.lrs(), **state.loss.extra.scheduled(), **run.progress}
    state.sched_g.step()
    state.sched_d.step()
    if state.ema is not None:
        state.ema.update(state.G)


# ---------------------------------------------------------------------------------------------
# the tick: logs, samples, scores, checkpoints
# ---------------------------------------------------------------------------------------------
def _tick(run: Session, step: int, stop: StopRequest) -> bool:
    """What is due after `step`; True when the run must stop now (a stop request, agreed by every rank)."""
    cfg, tc, state, tracker, world = run.cfg, run.cfg.train, run.state, run.tracker, run.world
    is_last = step == tc.steps
    # every rank takes the same branches (the flushes are collectives); a distributed run agrees on a stop
    # request when it logs, a single process stops at the end of the step the signal came in
    logs = step % tc.log_every == 0 or is_last or (stop.signal is not None and not world.distributed)
    if logs:
        means = tracker.flush(step, run.step_values)
        if run.health is not None and means:
            tracker.scalars(run.health.on_log(step, means), step)
    else:
        tracker.advance(step)
    stopping = logs and agree(stop.signal is not None, state.device)  # one process: logs whenever a signal came
    if (step % tc.sample_every == 0 or is_last) and world.main:
        G = state.sampler(cfg.seed)
        fake = write_samples(G, state.D, state.fixed_z, run.data, step, run.run_dir, tracker)
        if run.health is not None:  # toys: more points from G, drawn from the scores' seed, not training's stream
            draw = functools.partial(generate, G, seed=int(cfg.eval.seed), device=state.device)
            tracker.scalars(run.health.on_samples(step, fake, draw), step)
    best = False
    if TrainingEval.is_due(int(cfg.eval.every), step, is_last):
        tracker.flush(step, run.step_values)  # never score (or keep as best) weights that went NaN
        if run.evaluator.enabled:
            best = run.evaluator.run(step, state.sampler(cfg.seed), state.D, tracker)
    if step % tc.ckpt_every == 0 or is_last or stopping or best:  # best: rank 0 only, whose flush just ran
        tracker.flush(step, run.step_values)  # never write a checkpoint with NaN weights
        state.check_finite()
        if world.main:
            about_run = {**run.about_run, "eval": run.evaluator.state()}
            numbered = step % tc.ckpt_every == 0
            save_checkpoints(state, run.run_dir, about_run, numbered, best, cfg.seed, keep=tc.keep_ckpts)
        run.last_saved = step
    return stopping


def config_text(plain_cfg: dict[str, Any]) -> str:
    """The run's config as TensorBoard's text: only the keys its chosen options read (the checkpoint keeps it all)."""
    return "```yaml\n" + yaml.safe_dump(options_read(plain_cfg), sort_keys=False) + "```"


def hparams(choices: dict[str, Any], plain_cfg: dict[str, Any]) -> dict[str, Any]:
    """Flat hyper-parameters for TensorBoard's HParams tab: group choices plus every scalar option the chosen options
    read (a `_target_` model logs none of the built-in architectures' keys)."""
    values: dict[str, Any] = {k: str(v) for k, v in choices.items() if v is not None and not k.startswith("hydra")}
    for k, v in flatten(options_read(plain_cfg)).items():
        if isinstance(v, (bool, int, float, str)):
            values[k] = v
        elif isinstance(v, list):
            values[k] = str(v)
    return values
