"""The one exception type for problems a user can fix, and the exit codes.

`gan_cli.cli` prints its message as a single paragraph, without a traceback, and exits with
`exit_code`; everything else is a bug and keeps its traceback.
"""

import re

USER_ERROR = 2  # bad input: an option, a path, a checkpoint
DIVERGED = 3  # a NaN or inf stopped training
IO_FAILED = 4  # the disk or a file failed under a running command (full, read-only, unreadable, corrupt)
INTERRUPTED = 130  # Ctrl-C or SIGTERM, after saving


def interrupted_message(command: str) -> str:
    """The one line for a Ctrl-C that stops `gan` without saving (during start-up, or a second one in training)."""
    who = f"gan {command}" if command else "gan"
    return (
        f"gan: error: {who}: interrupted. A second Ctrl-C stops at once without saving: a run directory keeps the checkpoint "
        f"of its last save (resume it with `gan train resume=<run dir>`); one Ctrl-C during training saves first."
    )


class GanError(Exception):
    """A user-facing error: the message names the bad value and what is allowed."""

    def __init__(self, message: str, exit_code: int = USER_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def blame(exc: BaseException, options: str) -> None:
    """Mark an error (out of memory, say) with the options whose values led to it, so the CLI's message names them
    (`options_to_lower`) instead of its general advice; the caller re-raises it as it is."""
    exc.gan_options = options  # type: ignore[attr-defined]


def options_to_lower(exc: BaseException, default: str) -> str:
    return str(getattr(exc, "gan_options", default))


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, the CPU allocator's RuntimeError, or Python's own MemoryError."""
    text = str(exc).lower()
    phrases = ("not enough memory", "out of memory", "can't allocate memory", "cannot allocate memory")
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or any(p in text for p in phrases)


def shown(path: object, limit: int = 120) -> str:
    """A path for a message: quoted, and cut in the middle when it is too long to read."""
    text = str(path)
    if len(text) <= limit:
        return repr(text)
    return repr(text[: limit // 2] + " ... " + text[-limit // 3 :]) + f" ({len(text):,} characters)"


def first_of(names: "list[str]", n: int) -> str:
    """The first `n` names, comma-separated, and how many more there are: a list a message can hold."""
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def one_of(kind: str, value: object, allowed: "list[str] | tuple[str, ...]") -> GanError:
    """The standard 'unknown X' error, listing the allowed choices."""
    return GanError(f"Unknown {kind} {value!r}. Allowed: {', '.join(sorted(allowed))}.")


def io_failure(err: OSError, what: str, after: str = "") -> GanError:
    """An OSError as one paragraph: what failed, the system's reason and the file, then `after` (what is safe, how to go on)."""
    # a DataLoader worker's error arrives as its traceback's text: keep the last line, without "OSError: [Errno 5] "
    reason = err.strerror or re.sub(
        r"^\w*Error: (\[Errno \d+\] )?", "", (str(err).strip().splitlines() or [type(err).__name__])[-1]
    )
    where = f" ({err.filename})" if err.filename else ""
    hint = {
        28: " The disk is full: free some space.",
        30: " The file system is read-only.",
        13: " Permission denied: check the folder's owner and mode.",
    }.get(err.errno or 0, "")
    return GanError(f"{what} failed: {reason}{where}.{hint}{(' ' + after) if after else ''}", exit_code=IO_FAILED)
