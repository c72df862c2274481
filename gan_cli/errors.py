"""The one exception type for problems a user can fix.

`gan_cli.cli` prints its message as a single paragraph, without a traceback, and exits with
`exit_code`; everything else is a bug and keeps its traceback.
"""


class GanError(Exception):
    """A user-facing error: the message names the bad value and what is allowed."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_of(kind: str, value: object, allowed: "list[str] | tuple[str, ...]") -> GanError:
    """The standard 'unknown X' error, listing the allowed choices."""
    return GanError(f"Unknown {kind} {value!r}. Allowed: {', '.join(sorted(allowed))}.")
