"""Tables on the console and the overrides that label their rows: shared by `gan report` and `gan eval`'s sweep
table, which do not import each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table


def read_yaml(path: Path) -> Any:
    """A run's YAML record, or None when it is missing or unreadable (a report lists what it can)."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def read_overrides(run: Path) -> dict[str, str]:
    """key -> value of the run's command-line overrides (hydra.* left out: where it ran, not what it ran)."""
    items = read_yaml(run / ".hydra" / "overrides.yaml") or []
    pairs = (str(o).split("=", 1) for o in items if "=" in str(o))
    return {k.lstrip("+~"): v for k, v in pairs if not k.lstrip("+~").startswith("hydra.")}


def split_overrides(overrides: list[dict[str, str]]) -> tuple[dict[str, str], list[str]]:
    """(the overrides every run has with the same value, the keys whose values differ or that some runs lack);
    a single run shares nothing: all its overrides are what sets it apart."""
    keys = list(dict.fromkeys(k for o in overrides for k in o))
    shared = (
        {k: overrides[0][k] for k in keys if all(o.get(k) == overrides[0].get(k) for o in overrides)}
        if len(overrides) > 1
        else {}
    )
    return shared, [k for k in keys if k not in shared]


def fit_columns(cols: list[tuple[str, list[str]]], width: int, keep: int = 2) -> list[list[tuple[str, list[str]]]]:
    """Split the columns into tables that each fit `width` characters, the first `keep` (rank, run) in every one."""

    def need(col: tuple[str, list[str]]) -> int:
        return max(len(col[0]), *(len(c) for c in col[1])) + 3  # rich's padding and border

    head, rest = cols[:keep], cols[keep:]
    tables: list[list[tuple[str, list[str]]]] = []
    current, used = list(head), sum(need(c) for c in head) + 1
    for col in rest:
        if len(current) > keep and used + need(col) > width:
            tables.append(current)
            current, used = list(head), sum(need(c) for c in head) + 1
        current.append(col)
        used += need(col)
    tables.append(current)
    return tables


def print_columns(cols: list[tuple[str, list[str]]], console: Console, keep: int = 2) -> None:
    """(header, cells) columns as rich tables that each fit the console, the first `keep` columns in every one."""
    rows = len(cols[0][1])
    for part in fit_columns(cols, console.width, keep):
        table = Table(show_edge=False, pad_edge=False)
        for i, (header, _) in enumerate(part):
            table.add_column(header, justify="left" if i == keep - 1 else "right", no_wrap=True)
        for r in range(rows):
            table.add_row(*(cells[r] for _, cells in part))
        console.print(table)
