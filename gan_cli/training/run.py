"""`gan train`'s one entry: the world (one process, N local workers, or a rank of a launched run), the run
directory's lock, status.json however the run ends, then the loop.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gan_cli.checkpoint import LAST
from gan_cli.config import to_plain
from gan_cli.errors import GanError, io_failure
from gan_cli.logs import CONSOLE
from gan_cli.parallel import (
    SINGLE,
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
        t0 = time.perf_counter()
        earlier = float(read_status(run_dir).get("seconds", 0.0)) if cfg.resume else 0.0
        end = RunEnd(steps=int(cfg.train.steps))
        try:
            result = run_loop(cfg, run_dir, overrides, hparam_choices, end, parallel_jobs, world)
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
