"""The columns that tables of results show (``vaereg results``, ``vaereg eval``'s summary and
the report's leaderboard), from one source: a few fixed columns and the metric columns
declared ``shown``, with their headings and formats; and sorting rows by a metric column in
its direction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vaereg import UsageError
from vaereg.metrics import Column
from vaereg.registry import get_registry
from vaereg_harness.metrics import DEFAULTS
from vaereg_harness.store.results import metric_columns


@dataclass(frozen=True)
class Shown:
    """A column of a table: its name in the store, its heading, and how a value is written."""

    name: str
    heading: str
    format: str = "{}"

    def cell(self, row: dict[str, Any]) -> str:
        value = row.get(self.name)
        return "-" if value is None else self.format.format(value)


LEADING = [Shown("combo", "combo"), Shown("dataset", "dataset"), Shown("seed", "seed"), Shown("epochs", "epochs"),
           Shown("condition", "condition")]
TRAILING = [Shown("created_at", "run at (UTC)", "{:%Y-%m-%d %H:%M}")]


def shown(column: Column) -> Shown:
    """How tables show a metric column: its heading (or name) and format (``.4g`` for a float)."""
    spec = column.format or (".4g" if column.type is float else "")
    return Shown(column.name, column.heading or column.name, f"{{:{spec}}}")


def table_columns(rows: list[dict[str, Any]]) -> list[Shown]:
    """The fixed columns, then every metric column declared ``shown``, in registration order: a
    default metric's always, another's once a row has a value in it; then when the row was made."""
    registry = get_registry().entries["metric"]
    default = {c.name for name in DEFAULTS if name in registry for c in registry[name].cls.columns}
    metrics = [shown(c) for c in metric_columns().values()
               if c.shown and (c.name in default or any(r.get(c.name) is not None for r in rows))]
    return [*LEADING, *metrics, *TRAILING]


def format_table(rows: list[dict[str, Any]]) -> str:
    """``rows`` as a plain-text table, one line per row under a line of headings."""
    columns = table_columns(rows)
    cells = [[c.heading for c in columns], *([c.cell(row) for c in columns] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in cells)


def sortable() -> dict[str, Column]:
    """The metric columns rows can be sorted by: the numeric ones."""
    return {name: c for name, c in metric_columns().items() if c.type in (int, float)}


def sort_key(column: str) -> Callable[[dict[str, Any]], tuple[bool, float]]:
    """The key that puts rows best first by ``column``: descending where higher is better,
    ascending otherwise; rows without a value last. An unknown column is a usage error listing
    the sortable ones."""
    known = sortable()
    if column not in known:
        raise UsageError(f"--sort {column!r} is not a sortable column; sortable: {', '.join(known)}")
    sign = -1 if known[column].higher_is_better else 1
    return lambda row: (row.get(column) is None, sign * (row.get(column) or 0))
