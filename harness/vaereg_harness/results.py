"""The results store: one Parquet file per evaluated combo in a directory (a Parquet dataset).

Each file is written under a temporary name and renamed, so concurrent runs never lose or
corrupt rows. The schema is declared here once; readers pass it, so files written before a
column was added read back with that column null instead of dropping it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

SCHEMA_VERSION = 1

SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("combo", pa.string(), nullable=False),
        pa.field("parts", pa.string(), nullable=False),  # JSON: slot -> {name, plugin, version}
        pa.field("config", pa.string(), nullable=False),  # JSON: part options, objective, training
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        pa.field("epochs", pa.int64(), nullable=False),
        pa.field("nelbo_nats", pa.float64()),
        pa.field("nll_nats", pa.float64()),
        pa.field("nll_bpd", pa.float64()),
        pa.field("iw_samples", pa.int64()),
        pa.field("train_seconds", pa.float64()),
        pa.field("train_images_per_s", pa.float64()),
        pa.field("stage_seconds", pa.string()),  # JSON: stage -> seconds
        pa.field("eval_seconds", pa.float64()),
        pa.field("sample_images_per_s", pa.float64()),
        pa.field("peak_gpu_memory_mb", pa.float64()),  # training and evaluation, CUDA only
        pa.field("codebook_perplexity", pa.float64()),
        pa.field("codebook_usage", pa.float64()),
        pa.field("kl_per_level", pa.string()),  # JSON: mean KL per level in nats, z_1 first
        pa.field("active_units", pa.int64()),  # latent dimensions with mean KL above 0.01 nats
        pa.field("fid", pa.float64()),
        pa.field("fid_extractor", pa.string()),  # torch-fidelity extractor name:weight-hash
        pa.field("fid_samples", pa.int64()),
        pa.field("fid_reference", pa.string()),  # split:size
        pa.field("fid_floor", pa.float64()),  # FID(train split, test split), same extractor
        pa.field("fid_note", pa.string()),  # why fid is null, when it is
        pa.field("samples_png", pa.string()),
        pa.field("reconstructions_png", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("vaereg_version", pa.string(), nullable=False),
        pa.field("torch_version", pa.string(), nullable=False),
    ],
    metadata={"vaereg.schema_version": str(SCHEMA_VERSION)},
)


def append_row(directory: Path, row: dict[str, Any]) -> Path:
    """Write ``row`` as a new file of the dataset at ``directory``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([row], schema=SCHEMA)
    unique = uuid.uuid4().hex  # never overwrite: two writers may share a run_id and a second
    name = f"{row['created_at']:%Y%m%dT%H%M%S}-{row['run_id']}-{unique[:12]}.parquet"
    tmp = directory / f".{name}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, directory / name)
    return directory / name


def read_results(directory: Path) -> pa.Table:
    """Every row under ``directory`` under the declared schema (empty if there is none)."""
    if not directory.is_dir():
        return SCHEMA.empty_table()
    files = sorted(str(p) for p in directory.glob("*.parquet"))
    if not files:
        return SCHEMA.empty_table()
    return ds.dataset(files, schema=SCHEMA, format="parquet").to_table().sort_by("created_at")
