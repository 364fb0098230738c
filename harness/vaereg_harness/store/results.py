"""The results store: one Parquet file per evaluated combo in a directory (a Parquet dataset).

A row is a typed ``Row``: the run's identity and facts as fixed fields, and the values of its
metrics in ``scores``. The Parquet schema (``schema()``) is the fixed fields' (derived from
``Row``) followed by every registered metric's declared columns, typed as declared, so a
plugin's metric extends it with no edit here. An unknown or missing fixed column, or a score no
registered metric declares, fails when the row is built. Each file is written under a temporary
name and renamed, so concurrent runs never lose or corrupt rows.

Readers read every file under the current schema. A column a file lacks (written before the
column existed, or before its metric was installed) reads as null. A column no registered metric
declares now (its plugin uninstalled or disabled) is dropped from what is read: the file keeps
it, and the values show again once the plugin is back."""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from vaereg import VaeregError
from vaereg.metrics import Column
from vaereg.registry import PluginLoadWarning, get_registry
from vaereg_harness.metrics import DEFAULTS
from vaereg_harness.run.config import HOW_IT_RUNS
from vaereg_harness.store.files import atomic_write

SCHEMA_VERSION = 7  # 5: metric columns come from the registered metrics' declarations; 6: nll_note;
#                    7: paths relative to the results folder
RELATIVE_PATHS = 7  # the first schema whose paths are relative to the results folder

Value = int | float | str | None


@dataclass(frozen=True, kw_only=True)
class Row:
    """One evaluated combo. Fixed columns without a default are required; ``X | None`` is
    nullable. ``scores`` holds the metric columns (column name -> value)."""

    run_id: str
    created_at: datetime  # UTC
    combo: str  # as given
    parts: str  # JSON: slot -> {name, plugin, version}
    config: str  # JSON: part options, objective, training, evaluation, metrics: the resolved configuration
    run_dir: str | None = None  # the run's folder: checkpoint, metrics.jsonl, grids
    config_hash: str | None = None  # the hash of the training configuration that names run_dir
    dataset: str
    seed: int
    device: str
    threads: str | None = None  # intra-op CPU threads: "N" fixed, or "auto:LO-HI", the counts the load allowed
    world_size: int | None = None  # processes that trained and scored it (torchrun's WORLD_SIZE; 1 without)
    batch_size: int | None = None  # images per optimiser step, over every rank together
    epochs: int
    condition: str | None = None  # "label": the NLL is -log p(x | y)
    eval_images: int | None = None  # --eval-images: the NLL and ELBO are over this fixed test subset
    samples_png: str | None = None  # pixels sampled from the likelihood
    samples_mean_png: str | None = None  # the likelihood's mean images for the same latents (sampled pixels
    #                                      where the likelihood has no cheap mean: PixelCNN)
    reconstructions_png: str | None = None
    traversals_png: str | None = None  # latent traversals of the most active dimensions (continuous vectors)
    interpolations_png: str | None = None  # between test images' posterior means (continuous vectors)
    factor_mi_png: str | None = None  # MI between latent dimensions and factors (data sets with factors)
    status: str
    vaereg_version: str
    torch_version: str
    scores: dict[str, Value] = field(default_factory=dict)  # metric column -> value; not a column itself

    def __post_init__(self) -> None:
        unknown = sorted(set(self.scores) - set(metric_columns()))
        if unknown:
            raise TypeError(f"no registered metric declares the column {unknown[0]!r}")

    def __getattr__(self, name: str) -> Value:
        """A metric column reads as an attribute too (``row.nll_nats``): None where unscored."""
        if name in metric_columns():
            return self.__dict__.get("scores", {}).get(name)
        raise AttributeError(f"{type(self).__name__} has no column {name!r}")

    def as_dict(self) -> dict[str, Any]:
        """Every column of the store: the fixed ones, then each metric column (None where unscored)."""
        fixed = {name: getattr(self, name) for name in FIXED.names}
        return {**fixed, **{name: self.scores.get(name) for name in metric_columns()}}


ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), datetime: pa.timestamp("us", tz="UTC")}


def _arrow_field(name: str, hint: object) -> pa.Field:
    nullable = typing.get_origin(hint) is types.UnionType
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if nullable else hint
    return pa.field(name, ARROW_TYPES[base], nullable=nullable)


def schema_of(row_type: type) -> pa.Schema:
    """The fixed columns of ``row_type``: every field but ``scores``."""
    hints = typing.get_type_hints(row_type)
    return pa.schema([_arrow_field(f.name, hints[f.name]) for f in dataclasses.fields(row_type) if f.name != "scores"])


FIXED = schema_of(Row)
REQUIRED = [f.name for f in FIXED if not f.nullable]  # a file without one of these is not a results file


def _declared() -> tuple[dict[str, Column], dict[str, str]]:
    """The registered metrics' columns by name, in registration order, and the metrics left out
    (name -> why): those declaring a column that a fixed column or an earlier metric holds."""
    columns: dict[str, Column] = {}
    owners: dict[str, str] = {}
    refused: dict[str, str] = {}
    for name, entry in get_registry().entries["metric"].items():
        mine = [c.name for c in entry.cls.columns]
        clash = next((c for c in mine if c in FIXED.names or c in owners or mine.count(c) > 1), None)
        if clash is None:
            columns.update((c.name, c) for c in entry.cls.columns)
            owners.update(dict.fromkeys(mine, name))
            continue
        holder = ("is a fixed column of every row" if clash in FIXED.names else
                  f"metric {owners[clash]!r} already declares" if clash in owners else "it declares twice")
        refused[name] = (f"metric {name!r} (plugin {entry.plugin!r}) declares the column {clash!r}, which {holder}; "
                         f"rename the column")
        warnings.warn(f"vaereg {refused[name]}; the metric is left out", PluginLoadWarning, stacklevel=3)
    return columns, refused


def metric_columns() -> dict[str, Column]:
    """Every registered metric's declared column, by name, in registration order."""
    return _declared()[0]


def refused_metrics() -> dict[str, str]:
    """Registered metrics whose columns cannot be stored (a name taken), with why."""
    return _declared()[1]


def schema() -> pa.Schema:
    """The store's schema: the fixed columns, then every registered metric's declared columns."""
    extra = [pa.field(c.name, ARROW_TYPES[c.type]) for c in metric_columns().values()]
    return pa.schema([*FIXED, *extra], metadata={"vaereg.schema_version": str(SCHEMA_VERSION)})


PATHS = ("run_dir", "samples_png", "samples_mean_png", "reconstructions_png", "traversals_png", "interpolations_png",
         "factor_mi_png")  # relative to the results folder
KEPT = "unrecorded-row.parquet"  # a row the results store could not take, kept in its run folder


def append_row(directory: Path, row: Row) -> Path:
    """Write ``row`` as a new file of the dataset at ``directory``; returns its path."""
    return _append(directory, _table(row, directory))


def _table(row: Row, directory: Path | None) -> pa.Table:
    """``row`` as a table, its paths relative to the results folder ``directory`` (absolute for None)."""
    return pa.Table.from_pylist([relative_paths(row.as_dict(), directory)], schema=schema())


def relative_paths(row: dict[str, Any], directory: Path | None) -> dict[str, Any]:
    """``row`` with its paths relative to ``directory`` (made absolute first), or absolute for None."""
    def moved(path: str | None) -> str | None:
        if not path:
            return path
        here = Path(path).absolute()
        return str(here) if directory is None else os.path.relpath(here, directory.absolute())

    return {**row, **{name: moved(row[name]) for name in PATHS}}


def _append(directory: Path, table: pa.Table) -> Path:
    row = table.to_pylist()[0]
    unique = uuid.uuid4().hex  # never overwrite: two writers may share a run_id and a second
    name = f"{row['created_at']:%Y%m%dT%H%M%S}-{row['run_id']}-{unique[:12]}.parquet"
    return atomic_write(directory / name, lambda tmp: pq.write_table(table, tmp))


def append_or_keep(directory: Path, row: Row) -> Path:
    """Append ``row``; if the store cannot take it (a full disk), keep it in the run's folder
    for ``recover_rows`` and say so in the error."""
    try:
        return _append(directory, _table(row, directory))
    except VaeregError as exc:
        if row.run_dir is None:
            raise
        kept = Path(row.run_dir) / KEPT
        table = _table(row, None)  # absolute paths until a store takes it
        try:
            atomic_write(kept, lambda tmp: pq.write_table(table, tmp))
        except VaeregError:
            raise VaeregError(f"{exc}; the row could not be kept in {kept} either") from None
        raise VaeregError(f"{exc}; the row is kept in {kept}, and the next 'vaereg eval' with this --out adds it"
                          ) from None


def recover_rows(directory: Path, out: Path) -> list[Path]:
    """Append the rows kept in run folders under ``out`` (``append_or_keep``) to the store at
    ``directory``; returns the files added."""
    added = []
    for kept in sorted(out.glob(f"*/{KEPT}")):
        try:
            table = pq.read_table(kept, schema=schema())
        except (pa.ArrowException, OSError):
            continue  # not ours to judge; it stays where it is
        rows = [relative_paths(r, directory) for r in table.to_pylist()]
        added.append(_append(directory, pa.Table.from_pylist(rows, schema=schema())))
        kept.unlink()
    return added


def read_results(directory: Path, on_skip: Callable[[Path, str], None] | None = None) -> pa.Table:
    """Every row under ``directory`` under the current ``schema()`` (empty if there is none), its
    paths absolute and a ``run_dir`` for every row that has grids (``with_paths``). A file that
    is not a readable results file is skipped and reported to ``on_skip(path, why)`` (a warning
    by default), so one bad file never hides the other rows."""
    current = schema()
    if not directory.is_dir():
        return current.empty_table()
    tables = []
    for path in sorted(directory.glob("*.parquet")):
        try:
            stored = pq.read_schema(path)
            missing = [name for name in REQUIRED if name not in stored.names]
            if missing:
                raise pa.ArrowInvalid(f"no column {missing[0]!r}: not a vaereg results file")
            table = ds.dataset(str(path), schema=current, format="parquet").to_table()
            tables.append(with_paths(table, directory, version(stored)))
        except (pa.ArrowException, OSError) as exc:
            why = str(exc).splitlines()[0][:200]
            if on_skip is None:
                warnings.warn(f"skipped {path}: {why}", stacklevel=2)
            else:
                on_skip(path, why)
    if not tables:
        return current.empty_table()
    return pa.concat_tables(tables).sort_by("created_at")


def version(stored: pa.Schema) -> int:
    """The schema version a results file was written under (0 when it does not say)."""
    text = (stored.metadata or {}).get(b"vaereg.schema_version", b"0")
    return int(text) if text.isdigit() else 0


def with_paths(table: pa.Table, directory: Path, written_under: int) -> pa.Table:
    """The rows of one file of the store at ``directory`` with every path absolute, and a
    ``run_dir`` for every row that has grids. Rows store paths relative to the results folder
    (schema 7), so a store and its runs moved or copied together still find each other. Rows
    written before hold paths relative to the folder their run started in: read from the
    current folder where that path exists, else from the folder that holds the results folder
    (where ``vaereg-runs`` and ``vaereg-results`` sit side by side). Rows written before
    ``run_dir`` was a column (schema 3) get the folder their grids are in."""
    base = directory.absolute()
    legacy = written_under < RELATIVE_PATHS

    def absolute(path: str | None) -> str | None:
        if not path or Path(path).is_absolute():
            return path
        if legacy and Path(path).exists():
            return str(Path(path).absolute())
        return os.path.normpath(base.parent / path if legacy else base / path)

    columns = {name: [absolute(p) for p in table.column(name).to_pylist()] for name in PATHS}
    columns["run_dir"] = [folder or (str(Path(grid).parent) if grid else None)
                          for folder, grid in zip(columns["run_dir"], columns["samples_png"], strict=True)]
    for name, values in columns.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(index), pa.array(values, pa.string()))
    return table


def recorded(directory: Path, config_hash: str, config: str,
             rows: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The row ``directory`` already holds of this run (the same training settings and the same
    resolved configuration), as column -> value, or None; ``rows``: the store's rows, where the
    caller has read them once for many runs. A row from before configurations recorded their
    metrics (and their options) ran the defaults. How a run ran (its threads, how often it
    checkpointed) does not tell runs apart."""
    wanted = comparable(json.loads(config))
    if rows is None:
        rows = read_results(directory, on_skip=lambda *_: None).to_pylist()
    for r in rows:
        if r["config_hash"] != config_hash or r["status"] != "ok":
            continue
        try:
            stored = json.loads(r["config"])
        except ValueError:
            continue
        if not isinstance(stored, dict):
            continue
        if comparable({"metrics": list(DEFAULTS), "metric_options": {}, **stored}) == wanted:
            return r
    return None


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded configuration without the training options that change how it runs, not
    what it computes."""
    train = config.get("train")
    if not isinstance(train, dict):
        return config
    return {**config, "train": {k: v for k, v in train.items() if k not in HOW_IT_RUNS}}
