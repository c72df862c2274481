"""`gan train`'s one entry: the world (one process, N local workers, or a rank of a launched run), the run
directory's lock, status.json however the run ends, then the loop.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from gan_cli.checkpoint import LAST
from gan_cli.config import to_plain
from gan_cli.errors import INTERRUPTED, GanError, io_failure
from gan_cli.logs import CONSOLE
from gan_cli.parallel import (
    SINGLE,
    World,
    launched_world,
    leave,
    quiet_worker_logging,
)
from gan_cli.rundir import (
    RunEnd,
    RunLock,
    read_status,
    resume_command,
    write_status,
)
from gan_cli.training.launch import launch_local
from gan_cli.training.loop import run_loop
from gan_cli.training.setup import check_dist, check_train_settings

log = logging.getLogger(__name__)


def train(
    cfg: DictConfig, run_dir: Path, overrides: list[str], hparam_choices: dict[str, Any], parallel_jobs: int = 1
) -> float:
    """Train as `cfg` says, writing everything into `run_dir`, which no other process may train in meanwhile.
    `parallel_jobs`: how many runs a sweep launcher trains side by side (they share the CPU cores).

    Returns the last value of the chosen score (eval.best) when eval.every > 0, else the final
    generator loss: the number a Hydra sweeper optimises. However it ends, `<run>/status.json` says how.
    """
    check_train_settings(cfg.train)
    check_dist(cfg.dist, cfg.train.batch_size)
    world = launched_world() or SINGLE
    if not world.distributed and cfg.dist.nproc_per_node > 1:  # this process launches the workers and waits for them
        return _launch_workers(cfg, run_dir, overrides, hparam_choices, parallel_jobs)
    quiet_worker_logging(world)
    with RunLock(run_dir) if world.main else contextlib.nullcontext():  # rank 0 holds the run directory for all
        attempt = _Attempt(cfg, run_dir, world)
        try:
            try:
                result = run_loop(
                    cfg, run_dir, overrides, hparam_choices, attempt.end, parallel_jobs, world,
                    started=attempt.started, job=sweep_job(),
                )  # fmt: skip
                attempt.end.status, attempt.end.exit_code = "finished", 0
                return result
            except GanError as err:
                attempt.end.ended_by(err)
                raise
            except OSError as err:  # disk full, a folder made read-only, an unreadable image: not a bug in gan
                failure = attempt.io_failure(err)
                raise failure from err
        except KeyboardInterrupt:  # a second Ctrl-C stops at once, without saving (also one in the handlers above)
            attempt.interrupted_at_once()
            raise
        finally:
            attempt.close()


class _Attempt:
    """One attempt at a run, as status.json records it.

    A resume touches status.json only once accepted (set up, state loaded): one refused leaves the record of how
    the run ended before; a new run records however it ends. Once started, status.json says `running` until the
    attempt ends (a process killed by SIGKILL leaves it so, never the previous attempt's `finished`)."""

    def __init__(self, cfg: DictConfig, run_dir: Path, world: World) -> None:
        self.run_dir, self.world, self.t0 = run_dir, world, time.perf_counter()
        self.earlier = float(read_status(run_dir).get("seconds", 0.0)) if cfg.resume else 0.0
        self.end = RunEnd(steps=int(cfg.train.steps))
        self.accepted = not cfg.resume
        self.previous_sigint: Any = None

    def started(self, step: int) -> None:
        """Set-up done and the resume accepted. From here on a Ctrl-C outside the loop's own handler (while the run
        winds down) raises KeyboardInterrupt, so the record says interrupted."""
        self.accepted = True
        if self.world.main:
            running = RunEnd(self.end.steps, step=step, status="running", exit_code=0, seconds=self.earlier)
            write_status(self.run_dir, running)
        if not self.world.distributed and threading.current_thread() is threading.main_thread():
            self.previous_sigint = signal.signal(signal.SIGINT, _raise_interrupt)

    def io_failure(self, err: OSError) -> GanError:
        last = self.run_dir / "checkpoints" / LAST
        after = (
            f"{last} holds the last complete state; fix the cause, then continue with: {resume_command(self.run_dir)}"
            if last.is_file()
            else "No checkpoint had been written yet."
        )
        failure = io_failure(err, "Training", after)
        self.end.ended_by(failure)
        return failure

    def interrupted_at_once(self) -> None:
        last = self.run_dir / "checkpoints" / LAST
        self.end.status, self.end.exit_code = "interrupted", INTERRUPTED
        self.end.reason = f"stopped at once by a second interrupt at step {self.end.step}, without saving: " + (
            f"{last} holds the last saved state" if last.is_file() else "no checkpoint had been written yet"
        )

    def close(self) -> None:
        with _signals_held(signal.SIGINT):  # a Ctrl-C now waits until status.json is written
            self.end.seconds = round(self.earlier + time.perf_counter() - self.t0, 2)
            leave()
            try:
                if self.world.main and self.accepted:
                    write_status(self.run_dir, self.end)
            except OSError as err:  # the disk that stopped the run may not take this file either
                log.warning("could not write %s: %s", self.run_dir / "status.json", err)
            if self.previous_sigint is not None:
                signal.signal(signal.SIGINT, self.previous_sigint)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_held(*signals: int) -> Iterator[None]:
    """Delivered only when the block is done (in the main thread; elsewhere Python runs no handler anyway)."""
    held = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
    if held:
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        if held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


def sweep_job() -> Optional[int]:
    """The job number of a multirun's job (what its console lines are prefixed with); None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return int(hc.job.num) if hc.mode == RunMode.MULTIRUN else None


def _launch_workers(
    cfg: DictConfig, run_dir: Path, overrides: list[str], hparam_choices: dict[str, Any], parallel_jobs: int
) -> float:
    """`dist.nproc_per_node=N`: N workers on this machine, started by torch's elastic launcher, train in `run_dir`."""
    from hydra.core.hydra_config import HydraConfig

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
    return launch_local(int(cfg.dist.nproc_per_node), run_dir, worker, job, shutdown_timeout=120)


def worker(job: dict[str, Any]) -> Any:
    """One rank of a `dist.nproc_per_node` run (started by `launch.launch_local`): the job's logging for rank 0, then
    `train` in the shared run directory. Errors are recorded the way torch's launcher reports them."""
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(_train_worker)(job)


def _train_worker(job: dict[str, Any]) -> Any:
    import logging.config
    import sys

    from gan_cli.config import register_schemas

    register_schemas()
    world = launched_world() or SINGLE
    if world.main and job.get("logging"):
        logging.config.dictConfig(job["logging"])
    cfg = OmegaConf.create(job["config"])
    try:
        return train(cfg, Path(job["run_dir"]), job["overrides"], job["choices"], job["parallel"])
    except GanError as err:  # rank 0 wrote it into status.json, which the launching process reports
        sys.exit(err.exit_code)
