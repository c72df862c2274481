"""TAB completion for the `gan` command: `eval "$(gan -sc install=bash)"`.

Hydra completes one app's config (groups, options, keys) and binds its script to the program it was started as; gan
starts its Hydra apps as `gan-train`, `gan-sample`, `gan-eval`, commands no shell knows, so Hydra's own script would
complete nothing. Here the script is bound to `gan`, its query completes the subcommand itself, and after
`gan train|sample|eval` hands the rest of the line to that command's Hydra app, which answers for its own config.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from typing import Callable, Mapping, Optional, Sequence

from gan_cli.errors import GanError

COMPLETION_FLAGS = ("-sc", "--shell-completion")
ACTIONS = ("install", "uninstall", "query")
SHELLS = ("bash", "zsh", "fish")  # Hydra's completion plugins


def completion_request(args: Sequence[str]) -> Optional[str]:
    """The value of `-sc` (install=bash, query=bash, ...) wherever it stands on the command line; None without it."""
    for i, arg in enumerate(args):
        if arg in COMPLETION_FLAGS:
            return args[i + 1] if i + 1 < len(args) else ""
        if arg.startswith("--shell-completion="):
            return arg.split("=", 1)[1]
    return None


def complete(request: str, commands: Sequence[str], apps: Mapping[str, Callable[[], object]]) -> None:
    """Answer `gan -sc ACTION=SHELL`: `commands` are gan's subcommands as the CLI lists them, `apps` the Hydra app of
    each subcommand that has a config (train, sample, eval)."""
    action, _, shell = request.partition("=")
    if action not in ACTIONS or shell not in SHELLS:
        raise GanError(
            f"-sc {request!r} is not a completion request gan knows. Allowed: -sc ACTION=SHELL with ACTION one of "
            f'{", ".join(ACTIONS)} and SHELL one of {", ".join(SHELLS)}, e.g. eval "$(gan -sc install=bash)".'
        )
    first = next(iter(apps.values()))
    if action != "query":  # Hydra's script, bound to the name the program runs as: gan
        _run_app(first, ["gan", "-sc", request], quiet=False)
        return
    line = os.environ.get("COMP_LINE", "")
    point = os.environ.get("COMP_POINT", "")
    if point.isdigit():
        line = line[: int(point)]  # what stands before the cursor is what is being completed
    after_command = re.match(r"\s*\S+\s+(\S+)\s+", line)
    if after_command is None:  # still on the subcommand's word (or before it)
        words = line.split()
        typed = words[1] if len(words) > 1 else ""
        print(("\n" if shell == "fish" else " ").join(c for c in commands if c.startswith(typed)))
        return
    command = after_command.group(1)
    if command not in apps:  # gan report takes folders: the shell's own file-name completion
        return
    os.environ["COMP_LINE"] = f"gan-{command} {line[after_command.end() :]}"
    _run_app(apps[command], [f"gan-{command}", "-sc", request], quiet=True)


def _run_app(app: Callable[[], object], argv: list[str], quiet: bool) -> None:
    """A Hydra app started as `argv`. `quiet` (a query): an error Hydra reports (a line it cannot parse yet) completes
    nothing and stays off the terminal, where it would break into the line being typed."""
    saved = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            app()
    except SystemExit:
        if not quiet:
            raise
    finally:
        sys.argv = saved
