"""The `gan` command: `gan train|sample|eval ...` dispatches to a Hydra app per subcommand.

This is the one place that turns a `GanError` into a one-paragraph message and an exit code;
everything below it raises and knows nothing of the terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from gan_cli.arguments import prepare, shown_jobs
from gan_cli.completion import COMPLETION_FLAGS, complete, completion_request
from gan_cli.composition import CONF
from gan_cli.errors import INTERRUPTED, GanError, interrupted_message, is_out_of_memory, options_to_lower
from gan_cli.logs import FILE_ONLY

USAGE = """usage: gan <command> [key=value ...] [-m] [--help]

commands:
  train    train a GAN variant (or a sweep with -m), logging to TensorBoard under outputs/
  sample   draw images or points from a checkpoint (no dataset needed)
  eval     score a checkpoint or a sweep (FID/KID/IS/precision-recall offline, toy mode coverage)
  export   the generator of a checkpoint as one TorchScript or ONNX file that runs without gan
  report   compare the runs of a sweep or of outputs/DATE: status, steps, time, scores, ranked by one score

Each command takes Hydra overrides: `gan train model=dcgan loss=wgan_gp train.steps=500`.
`gan <command> --help` lists its config groups and options (`gan report --help`: its arguments).
"""


def report(err: GanError) -> None:
    """One paragraph (one line, which the terminal wraps) on stderr, no traceback."""
    print(f"gan: error: {err}", file=sys.stderr)


def out_of_memory(exc: BaseException, lower: str) -> GanError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    first = first.split("DefaultCPUAllocator: ")[
        -1
    ]  # torch's "[enforce fail at alloc_cpu.cpp:127] err == 0." prefix says nothing
    return GanError(f"Out of memory ({first[:200]}). What was asked for does not fit on this device: lower {lower}.")


def _run_guarded(fn: Callable[[], object], log_file: bool = False, lower: str = "the batch size") -> object:
    """Inside a Hydra job: user errors become a message; in a sweep they fail only this job, and the sweep goes
    on to the next (Hydra would print the error's traceback and stop at the end). The job returns None, which an
    Optuna search records as a failed trial; the report at the end of the sweep lists the job and its reason.

    With `log_file` (train, whose Hydra job logging writes only to <run dir>/train.log) the message
    also goes to the log, so a run directory left by a failed run or sweep job says why it stopped.
    sample and eval have no log file, and Python's fallback handler would print the message twice.
    """
    try:
        try:
            return fn()
        except (MemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise out_of_memory(exc, options_to_lower(exc, lower)) from exc
    except GanError as err:
        from gan_cli.parallel import process_rank

        if process_rank() == 0:  # the ranks of a distributed run stop together, for the same reason: rank 0 says it
            report(err)
        if log_file:
            logging.getLogger("gan_cli").error("%s", err, extra=FILE_ONLY)  # the console got it from report()
        hc = HydraConfig.get() if HydraConfig.initialized() else None
        if hc is not None and hc.mode == RunMode.MULTIRUN and err.exit_code != INTERRUPTED:
            return None
        sys.exit(err.exit_code)


# the options that name a file or folder the user typed, per command: read from where gan was started
USER_PATHS = {
    "train": ("dataset.path", "dataset.root", "eval.inception_weights", "resume"),
    "sample": ("ckpt", "out"),
    "eval": ("ckpt", "inception_weights"),
    "export": ("ckpt", "out"),
}


def from_launch_dir(cfg: DictConfig, command: str) -> None:
    """With `hydra.job.chdir=true` Hydra runs the job inside its output directory; a relative path the user typed
    (dataset.path=imgs) still means the folder gan was started from, as a `_target_`'s module does: made absolute
    against it. Without chdir nothing changes (the run's config keeps the paths as typed)."""
    hc = HydraConfig.get()
    launch = str(hc.runtime.cwd)
    if not hc.job.chdir or os.path.realpath(os.getcwd()) == os.path.realpath(launch):
        return
    for key in USER_PATHS[command]:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
            OmegaConf.update(cfg, key, os.path.join(launch, value))


@hydra.main(config_path=CONF, config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> object:
    from gan_cli.runtime import exit_if_orphaned, exit_with_sweep_parent, parallel_jobs
    from gan_cli.training.run import train

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        exit_with_sweep_parent()  # a joblib worker: it ends when the gan that launched the sweep dies
    from_launch_dir(cfg, "train")
    run_dir = Path(hc.runtime.output_dir)
    lower = f"train.batch_size (now {cfg.train.batch_size}), the model widths (model.g_width, model.d_width) or dataset.image_size"
    parallel = parallel_jobs(hc.launcher.get("n_jobs")) if hc.mode == RunMode.MULTIRUN else 1  # joblib's n_jobs
    try:
        return _run_guarded(
            lambda: train(cfg, run_dir, list(hc.overrides.task), dict(hc.runtime.choices), parallel),
            log_file=True,
            lower=lower,
        )
    finally:
        exit_if_orphaned()


@hydra.main(config_path=CONF, config_name="sample", version_base="1.3")
def sample_app(cfg: DictConfig) -> object:
    from gan_cli.sample import sample

    from_launch_dir(cfg, "sample")
    return _run_guarded(lambda: sample(cfg), lower=f"n (now {cfg.n})")


@hydra.main(config_path=CONF, config_name="eval", version_base="1.3")
def eval_app(cfg: DictConfig) -> object:
    from gan_cli.evaluate import evaluate

    from_launch_dir(cfg, "eval")
    return _run_guarded(lambda: evaluate(cfg), lower=f"n (now {cfg.n})")


@hydra.main(config_path=CONF, config_name="export", version_base="1.3")
def export_app(cfg: DictConfig) -> object:
    from gan_cli.export import export

    from_launch_dir(cfg, "export")
    return _run_guarded(lambda: export(cfg))


COMMANDS: dict[str, Callable[[], object]] = {
    "train": train_app,
    "sample": sample_app,
    "eval": eval_app,
    "export": export_app,
}
SUBCOMMANDS = (*COMMANDS, "report")  # every word `gan` takes first: the dispatcher's and TAB completion's one list


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = args[0], args[1:]
    if completion_request(args) is not None and command in (*COMMANDS, *COMPLETION_FLAGS):
        try:  # `gan -sc install=bash`, or `gan train -sc ...` as Hydra's docs show it: one script, bound to gan
            complete(completion_request(args) or "", SUBCOMMANDS, COMMANDS)
        except GanError as err:
            report(err)
            sys.exit(err.exit_code)
        return
    if command == "report":
        report_main(rest)
        return
    if command not in COMMANDS:
        report(GanError(f"Unknown command {command!r}. Allowed: {', '.join(SUBCOMMANDS)}. Run `gan --help` for usage."))
        sys.exit(2)
    try:
        try:
            prepared = prepare(command, rest)
        except GanError as err:
            report(err)
            sys.exit(err.exit_code)
        if prepared is None:
            return
        rest = prepared
        jobs = shown_jobs(rest)
        if jobs is not None:  # `-m ... --cfg job`: each job's config, as Hydra shows one run's
            for number, (label, job) in enumerate(jobs):
                if label:
                    print(f"# job {number}: {label}", flush=True)
                sys.argv = [f"gan-{command}", *job]
                COMMANDS[command]()
            return
        sys.argv = [f"gan-{command}", *rest]
        if command == "train" and any(a in ("-m", "--multirun") for a in rest):
            from gan_cli.runtime import mark_sweep_parent

            mark_sweep_parent()
        COMMANDS[command]()
        if command == "train" and any(a in ("-m", "--multirun") for a in rest):
            end_of_sweep()
    # a second Ctrl-C in training that stops at once (or one before gan_cli.entry's handler, in tests)
    except KeyboardInterrupt:
        print(interrupted_message(command), file=sys.stderr)
        logging.shutdown()  # flush train.log
        sys.stderr.flush()
        # not sys.exit: Python would re-raise the pending SIGINT on its way out and end as "killed by signal 2"
        os._exit(INTERRUPTED)


def report_main(args: list[str]) -> None:
    from gan_cli.report import USAGE as REPORT_USAGE
    from gan_cli.report import report_command

    if any(a in ("-h", "--help") for a in args):
        print(REPORT_USAGE)
        return
    try:
        report_command(args)
    except GanError as err:
        report(err)
        sys.exit(err.exit_code)


def end_of_sweep() -> None:
    """After the sweep's report (printed by its Hydra callback): a sweep with failed jobs exits with the first one's code."""
    from gan_cli.report import LAST_SWEEP

    if not LAST_SWEEP or not LAST_SWEEP[-1].failed:
        return
    sweep = LAST_SWEEP[-1]
    failed = "; ".join(
        f"{r.label} ({' '.join(f'{k}={v}' for k, v in r.overrides.items() if k in sweep.varied)})" for r in sweep.failed
    )
    report(
        GanError(
            f"{len(sweep.failed)} of {len(sweep.runs)} sweep jobs failed, each with its reason in the report above: {failed}. The sweep ran every job."
        )
    )
    sys.exit(sweep.failed[0].exit_code or 1)


if __name__ == "__main__":
    main()
