"""What a run shows: TensorBoard scalars, images and hyper-parameters, console progress, train.log.

Scalars are summed on the device every step and read back once per `log_every` steps, so the
hot loop never waits for the GPU. The same read tells whether any loss went NaN or inf, and at
which step first.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from gan_cli.components import Component, Registry
from gan_cli.config import GROUPS
from gan_cli.errors import DIVERGED, GanError
from gan_cli.parallel import all_min_, all_sum_

log = logging.getLogger(__name__)
SHOWN = ("loss/D", "loss/G", "D(x)", "D(G(z))")  # what the progress line shows


class NonFiniteLoss(GanError):
    """A logged scalar went NaN or inf; the message names it and the first step. `step`: the step it went non-finite
    at (found at the next log, which may be many steps later); `last_logged`: the last step logged before it."""

    def __init__(
        self, message: str, exit_code: int = DIVERGED, step: Optional[int] = None, last_logged: Optional[int] = None
    ) -> None:
        super().__init__(message, exit_code)
        self.step, self.last_logged = step, last_logged


SKIPPED = "amp/skipped"  # 1 for a step whose fp16 gradients overflowed, so the loss scaler skipped its update


class ScalarAccumulator:
    """On-device running sums of per-step scalars, plus the first step at which each went non-finite.

    Under fp16 loss scaling a step may carry SKIPPED = 1: its gradients overflowed (expected while
    the scaler calibrates) and no weight changed, so its scalars count neither in the means nor as
    divergence; only SKIPPED itself (the share of skipped steps) is logged for such a window.
    """

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.sums: Optional[torch.Tensor] = None
        self.counts: Optional[torch.Tensor] = None
        self.first_bad: Optional[torch.Tensor] = None
        self.count = 0

    def add(self, step: int, stats: dict[str, torch.Tensor]) -> None:
        if not self.keys:
            self.keys = list(stats)
        values = torch.stack([stats[k].detach().float().reshape(()) for k in self.keys])
        if self.sums is None:
            self.sums = torch.zeros_like(values)
            self.counts = torch.zeros_like(values)
            self.first_bad = torch.full_like(values, -1.0)
            self.is_flag = torch.tensor([k == SKIPPED for k in self.keys], device=values.device)
        if SKIPPED in stats:
            kept = self.is_flag | (stats[SKIPPED].reshape(()) == 0)
            values = torch.where(kept, values, 0.0)
            self.counts += kept
        else:
            self.counts += 1
        bad = ~torch.isfinite(values) & (self.first_bad < 0)
        self.sums += values
        self.first_bad = torch.where(bad, torch.full_like(values, float(step)), self.first_bad)
        self.count += 1

    def read(self) -> tuple[dict[str, float], dict[str, int]]:
        """(means since the last read, {key: first non-finite step}) — one device-to-host copy. In a distributed run
        the sums and counts are added over the ranks first (the means of the global batch) and the first non-finite
        step is the earliest on any rank: every rank reads the same numbers, and stops together."""
        if self.sums is None or self.count == 0:
            return {}, {}
        totals = all_sum_(torch.stack([self.sums, self.counts]))
        first_bad = all_min_(
            torch.where(self.first_bad < 0, torch.full_like(self.first_bad, float("inf")), self.first_bad)
        )
        first_bad = torch.where(torch.isinf(first_bad), torch.full_like(first_bad, -1.0), first_bad)
        host = torch.stack([totals[0] / totals[1], first_bad, totals[1]]).cpu()
        means = {k: float(v) for k, v, n in zip(self.keys, host[0], host[2]) if n > 0}  # n = 0: every step skipped
        bad = {k: int(s) for k, s in zip(self.keys, host[1]) if s >= 0}
        self.sums.zero_()
        self.counts.zero_()
        self.count = 0
        return means, bad


# how each way a run ends shows in TensorBoard's HParams tab (its Status column and filter); the plugin has no
# "aborted", and an interrupted run is neither a success nor a failure: it can be resumed
SESSION_STATUS = {
    "finished": api_pb2.STATUS_SUCCESS,
    "interrupted": api_pb2.STATUS_UNKNOWN,
    "stopped": api_pb2.STATUS_UNKNOWN,
    "diverged": api_pb2.STATUS_FAILURE,
    "failed": api_pb2.STATUS_FAILURE,
}


def session_end(status: int) -> Summary:
    """The HParams plugin's session-end summary with the given api_pb2 status (what torch's `hparams` builds, status aside)."""
    content = HParamsPluginData(session_end_info=SessionEndInfo(status=status), version=metadata.PLUGIN_DATA_VERSION)
    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString())
    return Summary(
        value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=SummaryMetadata(plugin_data=plugin))]
    )


def registries() -> dict[str, Registry]:
    """The registry of each config group whose options are components."""
    from gan_cli.data.datasets import DATASETS
    from gan_cli.losses import OBJECTIVES
    from gan_cli.models import MODELS
    from gan_cli.optimizers import OPTIMIZERS

    return {"model": MODELS, "loss": OBJECTIVES, "optimizer": OPTIMIZERS, "dataset": DATASETS}


def components_of(cfg: Any) -> dict[str, Component]:
    """The component each config group of a run selects (a built-in, or the user's `_target_`): its registry entry,
    which says which of the group's keys it reads. A group that names no option (hparams logged without it) is left out."""

    def names_one(group: str, selector: str) -> bool:
        node = cfg.get(group)
        return hasattr(node, "get") and bool(node.get(selector) or node.get("_target_"))

    return {
        group: registry.of(cfg[group])
        for group, registry in registries().items()
        if group in GROUPS and names_one(group, registry.selector)
    }


def options_read(plain_cfg: dict[str, Any]) -> dict[str, Any]:
    """A run's config (plain containers) with only the keys its chosen options read in each group: a `_target_` model
    reads none of the built-in architectures' twenty-odd keys, a toy dataset no `path`, so the logs show none of them.
    The checkpoint keeps the whole config; this is what a person reads (the HParams tab, the config text)."""
    try:
        chosen = components_of(plain_cfg)
    except GanError:  # a component that no longer imports: show everything rather than nothing
        return plain_cfg
    return {
        key: {k: v for k, v in value.items() if k in chosen[key].uses} if key in chosen else value
        for key, value in plain_cfg.items()
    }


class Tracker:
    """`writes=False` (ranks other than 0 of a distributed run): the scalars are reduced with the other ranks, and
    nothing is written or shown."""

    def __init__(
        self, run_dir: Path, total_steps: int, start_step: int, writes: bool = True, job: Optional[int] = None
    ) -> None:
        """`job`: a sweep's job number; each console progress line then starts with `[job N] `, since jobs that
        run side by side (joblib) share the console."""
        self.run_dir, self.writes = run_dir, writes
        self.prefix = f"[job {job}] " if job is not None else ""
        # the last step whose scalars were logged (all finite); a resumed run's previous attempt logged its start step
        self.last_logged: Optional[int] = start_step if start_step > 0 else None
        self.writer = SummaryWriter(log_dir=str(run_dir)) if writes else None
        self.console = Console()
        self.interactive = self.console.is_terminal and writes
        self.acc = ScalarAccumulator()
        self.latest: dict[str, float] = {}
        self.total_steps, self.start_step = total_steps, start_step
        self.t0 = time.perf_counter()
        self.progress: Optional[Progress] = None
        if self.interactive:
            self.progress = Progress(
                TextColumn(f"{escape(self.prefix)}[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                console=self.console,
                transient=False,
            )
            self.task = self.progress.add_task("train", total=total_steps, completed=start_step, stats="")
            self.progress.start()

    # -- scalars -------------------------------------------------------------------------------
    def add(self, step: int, stats: dict[str, torch.Tensor]) -> None:
        self.acc.add(step, stats)

    def flush(self, step: int, extra: Optional[dict[str, float]] = None) -> dict[str, float]:
        """Write the window's means; raise NonFiniteLoss naming the first bad step and scalar."""
        if self.acc.count == 0:
            return {}
        means, bad = self.acc.read()
        if bad:
            key = min(bad, key=bad.get)
            before = (
                f"the last step logged before it was {self.last_logged}"
                if self.last_logged is not None
                else "no step had been logged before it"
            )
            raise NonFiniteLoss(
                f"{key} became non-finite (nan or inf) at step {bad[key]} (first seen at the log of step {step}; "
                f"{before})",
                exit_code=DIVERGED,
                step=bad[key],
                last_logged=self.last_logged,
            )
        means.update(extra or {})
        self.latest.update(means)
        self.last_logged = step
        if self.writer is None:
            return means
        for k, v in means.items():
            self.writer.add_scalar(k, v, step)
        line = "  ".join(f"{k} {means[k]:.3f}" for k in SHOWN if k in means)
        rate = (step - self.start_step) / max(time.perf_counter() - self.t0, 1e-9)
        log.info("step %d/%d  %s  (%.1f steps/s)", step, self.total_steps, line, rate)  # train.log: one job's own
        if self.progress is not None:
            self.progress.update(self.task, completed=step, stats=line)
        else:
            self.console.print(
                f"{self.prefix}step {step}/{self.total_steps}  {line}  ({rate:.1f} steps/s)",
                highlight=False,
                markup=False,  # "[job 3]" is text, not a style
                soft_wrap=True,
            )
        return means

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Scalars computed from the logged ones (the health detectors'): TensorBoard only."""
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)

    def advance(self, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    # -- pictures and text ---------------------------------------------------------------------
    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, grid, step)

    def figure(self, tag: str, fig, step: int) -> None:
        if self.writer is not None:
            self.writer.add_figure(tag, fig, step, close=False)

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, 0)

    # -- the end -------------------------------------------------------------------------------
    def finish(self, hparam_values: dict[str, Any], step: int, status: str) -> None:
        """Hyper-parameters with the final scalars (HParams dashboard), a summary table, and close."""
        if self.progress is not None:
            self.progress.stop()
        if self.writer is None:
            return
        final = {f"final/{k}": v for k, v in self.latest.items()}
        try:
            if final:
                exp, ssi, _ = hparams(hparam_values, final)
                sei = session_end(
                    SESSION_STATUS.get(status, api_pb2.STATUS_FAILURE)
                )  # torch's helper always says SUCCESS
                for summary in (exp, ssi, sei):
                    self.writer.file_writer.add_summary(summary)
                for k, v in final.items():
                    self.writer.add_scalar(k, v, step)
            self.writer.flush()
            self.writer.close()
        except OSError as err:  # the disk that stopped the run may not take the last events either
            log.warning("could not finish the TensorBoard log: %s", err)
        seconds = time.perf_counter() - self.t0
        table = Table(title=f"gan train: {status} at step {step}/{self.total_steps}", show_header=True)
        table.add_column("scalar")
        table.add_column("last value", justify="right")
        for k, v in self.latest.items():
            table.add_row(k, f"{v:.4g}")
        table.add_row("time", f"{seconds:.1f} s ({(step - self.start_step) / max(seconds, 1e-9):.1f} steps/s)")
        table.add_row("run dir", str(self.run_dir))
        self.console.print(table)
        log.info("%s at step %d after %.1f s; final %s", status, step, seconds, self.latest)
