"""The results store: one Parquet file per evaluated combo in a directory (a Parquet dataset).

A row is a typed ``Row``; the Parquet schema is derived from it, so the two cannot drift, and
an unknown or missing column fails when the row is built. Each file is written under a
temporary name and renamed, so concurrent runs never lose or corrupt rows. Readers pass the
schema, so files written before a column was added read back with that column null."""

from __future__ import annotations

import dataclasses
import types
import typing
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from vaereg import VaeregError
from vaereg_harness.files import atomic_write

SCHEMA_VERSION = 4


@dataclass(frozen=True, kw_only=True)
class Row:
    """One evaluated combo. Columns without a default are required; ``X | None`` is nullable."""

    run_id: str
    created_at: datetime  # UTC
    combo: str  # as given
    parts: str  # JSON: slot -> {name, plugin, version}
    config: str  # JSON: part options, objective, training, evaluation: the resolved configuration
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
    nelbo_nats: float | None = None
    nll_nats: float | None = None
    nll_bpd: float | None = None
    iw_samples: int | None = None
    train_seconds: float | None = None
    train_images_per_s: float | None = None
    stage_seconds: str | None = None  # JSON: stage -> seconds
    eval_seconds: float | None = None
    sample_images_per_s: float | None = None
    peak_gpu_memory_mb: float | None = None  # training and evaluation, CUDA only
    codebook_perplexity: float | None = None
    codebook_usage: float | None = None
    kl_per_level: str | None = None  # JSON: mean KL per level in nats, z_1 first
    active_units: int | None = None  # latent dimensions with mean KL above 0.01 nats
    fid: float | None = None
    fid_extractor: str | None = None  # torch-fidelity extractor name:weight-hash
    fid_samples: int | None = None
    fid_reference: str | None = None  # split:size
    fid_floor: float | None = None  # FID(train split, test split), same extractor
    fid_note: str | None = None  # why fid is null, when it is
    fid_extractor_accuracy: float | None = None  # the classifier extractor's accuracy on the test split
    fid_extractor_seconds: float | None = None  # obtaining the extractor in this run (0 when cached)
    fid_seconds: float | None = None  # sampling and scoring FID (the floor included the first time)
    condition_accuracy: float | None = None  # conditional samples the FID classifier puts in their class
    samples_png: str | None = None  # pixels sampled from the likelihood
    samples_mean_png: str | None = None  # the likelihood's mean images for the same latents (sampled pixels
    #                                      where the likelihood has no cheap mean: PixelCNN)
    reconstructions_png: str | None = None
    status: str
    vaereg_version: str
    torch_version: str


ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), datetime: pa.timestamp("us", tz="UTC")}


def _arrow_field(name: str, hint: object) -> pa.Field:
    nullable = typing.get_origin(hint) is types.UnionType
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if nullable else hint
    return pa.field(name, ARROW_TYPES[base], nullable=nullable)


def schema_of(row_type: type) -> pa.Schema:
    hints = typing.get_type_hints(row_type)
    fields = [_arrow_field(f.name, hints[f.name]) for f in dataclasses.fields(row_type)]
    return pa.schema(fields, metadata={"vaereg.schema_version": str(SCHEMA_VERSION)})


SCHEMA = schema_of(Row)
REQUIRED = [f.name for f in SCHEMA if not f.nullable]  # a file without one of these is not a results file


KEPT = "unrecorded-row.parquet"  # a row the results store could not take, kept in its run folder


def append_row(directory: Path, row: Row) -> Path:
    """Write ``row`` as a new file of the dataset at ``directory``; returns its path."""
    return _append(directory, _table(row))


def _table(row: Row) -> pa.Table:
    return pa.Table.from_pylist([dataclasses.asdict(row)], schema=SCHEMA)


def _append(directory: Path, table: pa.Table) -> Path:
    row = table.to_pylist()[0]
    unique = uuid.uuid4().hex  # never overwrite: two writers may share a run_id and a second
    name = f"{row['created_at']:%Y%m%dT%H%M%S}-{row['run_id']}-{unique[:12]}.parquet"
    return atomic_write(directory / name, lambda tmp: pq.write_table(table, tmp))


def append_or_keep(directory: Path, row: Row) -> Path:
    """Append ``row``; if the store cannot take it (a full disk), keep it in the run's folder
    for ``recover_rows`` and say so in the error."""
    table = _table(row)
    try:
        return _append(directory, table)
    except VaeregError as exc:
        if row.run_dir is None:
            raise
        kept = Path(row.run_dir) / KEPT
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
            table = pq.read_table(kept, schema=SCHEMA)
        except (pa.ArrowException, OSError):
            continue  # not ours to judge; it stays where it is
        added.append(_append(directory, table))
        kept.unlink()
    return added


def read_results(directory: Path, on_skip: Callable[[Path, str], None] | None = None) -> pa.Table:
    """Every row under ``directory`` under the declared schema (empty if there is none). A file
    that is not a readable results file is skipped and reported to ``on_skip(path, why)``
    (a warning by default), so one bad file never hides the other rows."""
    if not directory.is_dir():
        return SCHEMA.empty_table()
    tables = []
    for path in sorted(directory.glob("*.parquet")):
        try:
            missing = [name for name in REQUIRED if name not in pq.read_schema(path).names]
            if missing:
                raise pa.ArrowInvalid(f"no column {missing[0]!r}: not a vaereg results file")
            tables.append(ds.dataset(str(path), schema=SCHEMA, format="parquet").to_table())
        except (pa.ArrowException, OSError) as exc:
            why = str(exc).splitlines()[0][:200]
            if on_skip is None:
                warnings.warn(f"skipped {path}: {why}", stacklevel=2)
            else:
                on_skip(path, why)
    if not tables:
        return SCHEMA.empty_table()
    return pa.concat_tables(tables).sort_by("created_at")


def recorded(directory: Path, config_hash: str, config: str) -> bool:
    """Whether ``directory`` already holds a row of this run: the same training settings and the
    same resolved configuration."""
    rows = read_results(directory, on_skip=lambda *_: None).select(["config_hash", "config", "status"]).to_pylist()
    return any(r["config_hash"] == config_hash and r["config"] == config and r["status"] == "ok" for r in rows)
