"""A run directory belongs to one training process at a time, and a resume changes it only once accepted.

- `RunLock`: an exclusive `flock` on `<run>/.lock`, held while a process trains there. The kernel drops
  it when the process dies, however it dies, so a lock left by `kill -9` never blocks the next resume.
- `check_resumable`: refuses a resume that changes what is trained (anything but run length and cadence,
  `resume_changes`) or starts past the end; the CLI calls it before Hydra touches the directory.
- `record_resume`: an accepted resume writes its overrides and config under `.hydra/resumes/`, beside
  (never over) the files of the original run.
- `remove_stale_temp_files`: checkpoint temp files a killed writer left behind.
- `RunEnd` / `write_status`: `<run>/status.json` says how the last attempt ended (finished, interrupted, diverged,
  failed, with the error), at which step, after how long: what `gan report` reads.
- `shell_command`: a command line that works when pasted into a POSIX shell, whatever the path holds.
- `write_atomic`: every file gan writes into a run directory is a new temp file renamed over the old one: a full disk
  never leaves half a file, and a symlink planted at that name is replaced, never followed.
- `run_outputs` / `refuse_used_run_dir` / `refuse_used_sweep_dir`: a new run or sweep never writes over an earlier one.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from gan_cli.errors import DIVERGED, INTERRUPTED, GanError, first_of
from gan_cli.files import json_text, write_atomic

try:  # POSIX; elsewhere training runs without the lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
# keys that may change when a run is resumed: how long and how often, not what is trained
# (and how fast: the speed paths other than AMP leave the math unchanged)
# where the data lives may change (a run moved to another machine); train() then checks the data still has the
# checkpoint's shape and classes; the number of processes (dist.*) may change too: the data position counts global
# batches and every rank draws the single-process random numbers, so a run continues the same on any world size
RESUMABLE_CHANGES = (
    "train.steps",
    "train.log_every",
    "train.sample_every",
    "train.ckpt_every",
    "train.keep_ckpts",
    "train.num_workers",
    "train.threads",
    "device",
    "resume",
    "train.channels_last",
    "train.compile",
    "train.data_on_device",
    "train.d_pass",
    "train.health",
    "eval.",
    "dataset.root",
    "dataset.path",
    "dataset.download",
    "dist.",
)


class RunLock:
    """`with RunLock(run_dir):` trains in run_dir alone, or refuses with one paragraph naming the holder."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: Optional[int] = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self
        fd = _open_lock(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise in_use(self.path.parent, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays (removing it would race with the next holder)
            self._fd = None


def not_a_lock(path: Path) -> GanError:
    folder = path.is_dir() and not path.is_symlink()
    what = "a symbolic link" if path.is_symlink() else "a folder" if folder else "not a regular file"
    remove = f"rm {'-r ' if folder else ''}{shlex.quote(str(path))}"
    return GanError(
        f"{str(path)!r} is {what}: gan keeps its lock there and writes its pid into it, so it would write wherever that "
        f"leads. Nothing was written. Remove it ({remove}) if you did not make it, then run the command again."
    )


def check_lock_file(run_dir: Path) -> None:
    """Refuse a `.lock` that is anything but a regular file (a symlink to a file elsewhere, a fifo, a folder)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise not_a_lock(path)


def _open_lock(path: Path, flags: int) -> int:
    """The lock file opened without following a symlink (nor blocking on a fifo), and only when it is a regular file."""
    check_lock_file(path.parent)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:  # made a symlink since the check
            raise not_a_lock(path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise not_a_lock(path)
    return fd


def _holder(fd: int) -> str:
    """The pid the lock's holder wrote into the lock file."""
    return os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"


def in_use(run_dir: Path, holder: str) -> GanError:
    return GanError(
        f"{str(run_dir)!r} is in use: a `gan train` (pid {holder}) is training there now. Wait for it to finish, "
        f"or stop it (Ctrl-C saves a checkpoint) and resume then; to train something else, start a new run."
    )


def is_locked(run_dir: Path) -> Optional[str]:
    """The pid holding run_dir's lock (as written in the file), or None when nobody trains there."""
    path = Path(run_dir) / LOCK_FILE
    if fcntl is None or not path.is_file() or path.is_symlink():
        return None
    try:
        fd = _open_lock(path, os.O_RDONLY)
    except (GanError, OSError):  # not a lock gan made: nobody trains through it
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _holder(fd)
    finally:
        os.close(fd)  # also drops the shared lock taken just to look
    return None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _refused_keys(flat_saved: dict[str, Any], flat_now: dict[str, Any]) -> list[str]:
    """The flattened keys whose value a resume would change, other than the ones it may change."""
    return [
        k
        for k in sorted(set(flat_saved) | set(flat_now))
        if flat_saved.get(k) != flat_now.get(k) and not k.startswith(RESUMABLE_CHANGES)
    ]


def resume_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Every change a resume may not make, as 'key: old -> new' (and why, for train.steps under a schedule)."""
    flat_saved, flat_now = flatten(saved), flatten(now)
    changed = [f"{k}: {flat_saved.get(k)!r} -> {flat_now.get(k)!r}" for k in _refused_keys(flat_saved, flat_now)]
    saved_steps, steps = flat_saved.get("train.steps"), flat_now.get("train.steps")
    decaying = [
        f"{key}={flat_now[key]}"
        for key in ("optimizer.schedule", "loss.info_schedule")
        if flat_now.get(key) not in (None, "constant")
    ]
    if decaying and saved_steps != steps:
        changed.append(
            f"train.steps: {saved_steps} -> {steps} ({' and '.join(decaying)} decays to 0 at train.steps, so the steps already "
            f"taken would no longer fit it; only a run whose schedules are constant can be extended)"
        )
    return changed


def _overrides_keeping(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """key=value for each single value the resume would change, at what the run was trained with (a default that
    changed since the run began, e.g. model=lapgan's level_input, is the usual cause)."""
    flat_saved, flat_now = flatten(saved), flatten(now)
    return [
        override(k, hydra_value(flat_saved[k]))
        for k in _refused_keys(flat_saved, flat_now)
        if k in flat_saved and k in flat_now and isinstance(flat_saved[k], (type(None), bool, int, float, str))
    ]


def check_resumable(ckpt: dict[str, Any], path: Path, now: dict[str, Any]) -> None:
    """Refuse a resume that would change what is trained, or that starts at or past the end of the run."""
    changed = resume_changes(ckpt["config"], now)
    if changed:
        keep = _overrides_keeping(ckpt["config"], now)
        raise GanError(
            f"Cannot resume from {str(path)!r} with a different configuration ({'; '.join(changed)}). "
            f"Only {', '.join(RESUMABLE_CHANGES)} may change on resume; start a new run for anything else. The run directory was left as it was."
            + (f" To resume it as it was trained, add: {' '.join(keep)}." if keep else "")
        )
    steps = now["train"]["steps"]
    if int(ckpt["step"]) >= steps:
        raise GanError(
            f"The checkpoint {str(path)!r} is already at step {ckpt['step']}; pass a larger train.steps (now {steps}) to train on."
        )


def record_resume(run_dir: Path, overrides: list[str], config: dict[str, Any], step: int) -> Path:
    """`.hydra/resumes/<time>_step<N>/{overrides,config}.yaml`: what this resume ran with, the original files untouched."""
    folder = Path(run_dir) / ".hydra" / "resumes" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_pid{os.getpid()}_step{step}"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "overrides.yaml", yaml.safe_dump(list(overrides), allow_unicode=True))
    write_atomic(folder / "config.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return folder


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Delete `checkpoints/.NAME.*.tmp` left by a writer that was killed mid-write (call only while holding the lock)."""
    folder = Path(run_dir) / "checkpoints"
    stale = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def hydra_quote(value: str) -> str:
    """A value Hydra's override parser reads back verbatim: single-quoted, with \\ and ' escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def hydra_value(value: Any) -> str:
    """A Python value as Hydra's override grammar reads it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    return str(value)


def override(key: str, value: str) -> str:
    """key=value for Hydra, quoted only when the value holds something its grammar would not take as a plain string."""
    plain = value and all(c.isascii() and (c.isalnum() or c in "/._-+:~@") for c in value)
    return f"{key}={value if plain else hydra_quote(value)}"


def shell_command(*args: str) -> str:
    """The words as one POSIX shell line (each word quoted only where needed)."""
    return " ".join(shlex.quote(a) for a in args)


def saved_searchpath(run_dir: Path) -> list[str]:
    """The config search path the run was started with (its --config-dir folders, as `file://...`), from .hydra/hydra.yaml."""
    try:
        saved = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    paths = (saved.get("hydra") or {}).get("searchpath") if isinstance(saved, dict) else None
    return [str(p) for p in paths] if isinstance(paths, list) else []


def resume_command(run_dir: Path) -> str:
    """`gan train [--config-dir DIR] resume=RUN`, quoted for the shell (`gan train` reads the path verbatim, see
    arguments.resume_target): the run's own --config-dir again when it had one, which vouches for its components."""
    dirs = [p[len("file://") :] for p in saved_searchpath(run_dir) if p.startswith("file://")]
    return shell_command("gan", "train", *[a for d in dirs for a in ("--config-dir", d)], f"resume={run_dir}")


STATUS_FILE = "status.json"


@dataclass
class RunEnd:
    """How one training attempt ended, written to status.json when it ends, however it ends (short of kill -9).

    train() sets status, reason and exit code from the way it returns; the loop keeps `step` and `final`
    (the last logged scalars) current. `seconds` adds up the wall time of every attempt on the run."""

    steps: int
    step: int = 0
    status: str = "failed"
    reason: str = ""
    exit_code: int = 1
    seconds: float = 0.0
    final: dict[str, float] = field(default_factory=dict)
    warnings: Optional[list[dict[str, Any]]] = None  # what the health detectors saw (training/health.py); None: off

    def ended_by(self, err: GanError) -> None:
        self.status = {INTERRUPTED: "interrupted", DIVERGED: "diverged"}.get(err.exit_code, "failed")
        self.reason, self.exit_code = str(err), err.exit_code


def read_status(run_dir: Path) -> dict[str, Any]:
    """The run's status.json, or {} when it has none (an older run, one still in its first attempt, or killed) or one
    gan did not write (`read_status_checked` says what is wrong with it)."""
    return read_status_checked(run_dir)[0]


# what status.json holds (RunEnd's fields): a value of another type, or a file that is not JSON, was not written by gan
STATUS_TYPES: dict[str, Any] = {"steps": int, "step": int, "status": str, "reason": str, "exit_code": int,
                                "seconds": (int, float), "final": dict, "warnings": list}  # fmt: skip


def read_status_checked(run_dir: Path) -> tuple[dict[str, Any], str]:
    """(the run's status.json, ''), or ({}, what is wrong with it) for one that cannot be read, is not JSON, or
    holds values of other types than gan writes (edited by hand, cut short, written by another program)."""
    path = Path(run_dir) / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, ""
    except OSError as err:
        return {}, f"{STATUS_FILE} cannot be read ({err.strerror or err})"
    except ValueError as err:  # JSON's errors and bytes that are not UTF-8
        return {}, f"{STATUS_FILE} is not valid JSON ({str(err).splitlines()[0][:120]})"
    if not isinstance(data, dict):
        return {}, f"{STATUS_FILE} holds a JSON {type(data).__name__}, not the object gan writes"
    wrong = [k for k, kind in STATUS_TYPES.items() if data.get(k) is not None and not isinstance(data[k], kind)]
    final = data.get("final") if isinstance(data.get("final"), dict) else {}
    wrong += [f"final.{k}" for k, v in final.items() if v is not None and not _number_like(v)]
    if wrong:
        return {}, f"{STATUS_FILE} holds values of other types than gan writes ({first_of(wrong, 3)})"
    return data, ""


def _number_like(value: Any) -> bool:
    """A number, or a string float() reads ('inf', as strict JSON writes an infinity)."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def write_status(run_dir: Path, end: RunEnd) -> None:
    """Atomically (a reader never sees half a file); `exit_code` 0 for a finished run."""
    _write_status_dict(run_dir, asdict(end))


def record_warnings(run_dir: Path, warnings: list[dict[str, Any]]) -> None:
    """The health warnings so far into the status.json of a run that is still training (one without a status.json
    is left alone: its end writes the file, warnings included)."""
    status = read_status(run_dir)
    if status:
        _write_status_dict(run_dir, {**status, "warnings": warnings})


def _write_status_dict(run_dir: Path, status: dict[str, Any]) -> None:
    """Strict JSON: a run stopped by a NaN loss has NaN among its last values, which other tools' readers refuse bare."""
    write_atomic(Path(run_dir) / STATUS_FILE, json_text(status, indent=2) + "\n")


# what gan and Hydra write into a run directory: a folder holding any of these is an earlier run's
RUN_OUTPUTS = (
    ".hydra",
    LOCK_FILE,
    STATUS_FILE,
    "train.log",
    "checkpoints/*.pt",
    "samples",
    "figures",
    "metrics.json",
    "metrics.jsonl",
    "events.out.tfevents.*",
    ".ranks",
)


def run_outputs(run_dir: Path) -> list[str]:
    """The names in run_dir that an earlier run wrote (empty for a folder that is missing, empty or holds only the
    user's own files)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = {str(p.relative_to(run_dir)) for pattern in RUN_OUTPUTS for p in run_dir.glob(pattern)}
    return sorted(found)


def refuse_used_run_dir(run_dir: Path) -> None:
    """A new run (not a resume) into a folder that holds an earlier run would train over it: its last.pt, .hydra
    and logs replaced, its other checkpoints kept, two runs mixed in one folder."""
    found = run_outputs(run_dir)
    if found:
        shown_names = first_of(found, 4)
        raise GanError(
            f"hydra.run.dir={str(run_dir)!r} already holds a run ({shown_names}); a new run there would write over it. "
            f"To continue that run: {resume_command(Path(run_dir))}. To start a new one, name a new folder "
            f"(or drop hydra.run.dir). Nothing was written."
        )


def refuse_used_sweep_dir(sweep_dir: Path) -> None:
    """A sweep into a folder that is not empty would write its jobs 0..n-1 over those there, and its report would rank
    a job left over from the earlier sweep among its own."""
    sweep_dir = Path(sweep_dir)
    try:
        entries = sorted(p.name for p in sweep_dir.iterdir()) if sweep_dir.is_dir() else []
    except OSError:
        entries = []
    if entries or (sweep_dir.exists() and not sweep_dir.is_dir()):
        what = first_of(entries, 4)
        raise GanError(
            f"hydra.sweep.dir={str(sweep_dir)!r} is not empty ({what or 'it is a file'}): a new sweep there would write its "
            f"jobs over those already there and report them mixed with its own. Name a new folder, e.g. "
            f"hydra.sweep.dir={str(sweep_dir).rstrip('/')}_2, or drop hydra.sweep.dir. Nothing was written."
        )
