"""`dist.nproc_per_node=N`: N worker processes on this machine, started by torch's elastic launcher (the engine behind
`torchrun`) from inside the Hydra job, each running the worker function it is given; a failed or stopped worker
becomes one paragraph (rank 0's own reason from status.json when it stopped knowingly)."""

from __future__ import annotations

import logging
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from gan_cli.errors import INTERRUPTED, GanError
from gan_cli.rundir import read_status


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_local(
    nproc: int, run_dir: Path, worker: Callable[[dict[str, Any]], Any], job: dict[str, Any], shutdown_timeout: int
) -> Any:
    """Start `nproc` workers on this machine with torch's elastic launcher and wait for them; rank 0's result.

    The run directory already exists (Hydra made it); every worker trains in it, rank 0 writes. A worker that
    fails ends the run: the launcher stops the others. Ctrl-C / SIGTERM reach the workers, which agree on a step,
    save once and exit; the launcher waits `shutdown_timeout` seconds for that before it kills them.

    `worker(job)` runs in each process; it must be a module-level function (the workers are spawned, and find it by
    its import path), and it is the caller's: this module imports nothing of training."""
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"gan-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{free_port()}",
        local_addr="127.0.0.1",
        max_restarts=0,
        monitor_interval=0.2,
        start_method="spawn",
        logs_specs=DefaultLogsSpecs(log_dir=str(run_dir / ".ranks")),
        shutdown_timeout=shutdown_timeout,
    )
    try:
        with _quiet_launcher():
            results = elastic_launch(config, worker)(job)
    except ChildFailedError as err:
        raise _worker_failure(err, run_dir) from None
    except Exception as err:  # the launcher's own SignalException when Ctrl-C / SIGTERM reached it
        if type(err).__name__ != "SignalException":
            raise
        raise GanError(_ended_reason(run_dir) or f"{err}: the workers were stopped.", exit_code=INTERRUPTED) from None
    return results[0]


# torch's launcher logs a failed worker's whole traceback (some 30 lines, the surviving ranks' too) and each process it
# stops, before gan's one paragraph says which rank failed and why; the traceback stays in <run>/.ranks/.../error.json
LAUNCHER_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")


@contextmanager
def _quiet_launcher() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in LAUNCHER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _ended_reason(run_dir: Path) -> str:
    return str(read_status(run_dir).get("reason") or "")


def _worker_failure(err: Any, run_dir: Path) -> GanError:
    """One paragraph for a worker that failed: rank 0's own reason (status.json) when it stopped knowingly, else the
    first failed rank's exit code and error."""
    status = read_status(run_dir)
    codes = {rank: f.exitcode for rank, f in err.failures.items()}
    if status.get("reason") and status.get("exit_code"):
        return GanError(str(status["reason"]), exit_code=int(status["exit_code"]))
    # the cause first: a worker killed by a signal (the others then lose their peer), else the earliest, else rank 0
    rank, failure = min(err.failures.items(), key=lambda kv: (kv[1].exitcode >= 0, kv[1].timestamp, kv[0]))
    detail = (failure.message or "").strip().splitlines()
    why = detail[-1] if detail else f"exit code {failure.exitcode}"
    code = failure.exitcode if isinstance(failure.exitcode, int) and 0 < failure.exitcode < 128 else 1
    return GanError(
        f"Worker rank {rank} of the distributed run failed ({why}); the run stopped (exit codes by rank: {codes}). "
        f"Its output is in {run_dir / '.ranks'}.",
        exit_code=code,
    )
