"""Files written whole or not at all: a temp file beside the target, fsynced, renamed over it (a full disk leaves the
old file whole, a symlink at the target is replaced, never followed), and strict JSON for the records gan keeps."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Optional


def replace_atomically(path: Path, write: Callable[[IO[Any]], None], binary: bool = False,
                       mode: Optional[int] = None) -> None:  # fmt: skip
    """`write(f)` into a new temp file beside `path` (mkstemp: a fresh file, never a planted one), fsynced, then
    renamed over `path`: a crash or a full disk leaves the old file whole, and a symlink at `path` is replaced, never
    followed. `mode`: the new file's permissions (mkstemp's 0o600 when None)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """`text` into `path`, whole or not at all (`replace_atomically`), readable by all as a text record is."""
    replace_atomically(path, lambda f: f.write(text), mode=0o644)


def _plain_numbers(value: Any) -> Any:
    """`value` with every NaN as None and every infinity as the string "inf" / "-inf": what strict JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_numbers(v) for v in value]
    return value


def json_text(value: Any, indent: Optional[int] = None) -> str:
    """Strict JSON (no bare NaN or Infinity, which other readers refuse): NaN is written null, infinity "inf"."""
    return json.dumps(_plain_numbers(value), indent=indent, allow_nan=False)


def append_atomic(path: Path, text: str) -> None:
    """`path`'s content with `text` added, written by `write_atomic`: a symlink at `path` is neither read nor followed
    (the file starts anew), and a full disk never leaves half a line."""
    path = Path(path)
    earlier = ""
    if path.is_file() and not path.is_symlink():
        earlier = path.read_text(encoding="utf-8", errors="replace")
        if earlier and not earlier.endswith("\n"):
            earlier += "\n"
    write_atomic(path, earlier + text)
