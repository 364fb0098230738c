"""The Parquet results store: the typed row and its schema, atomic appends, concurrent
writers, schema evolution."""

import dataclasses
import subprocess
import sys
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vaereg_harness.results import SCHEMA, Row, append_row, read_results


def row(i: int, combo: str = "gaussian", **extra) -> Row:
    return Row(run_id=f"r{i}", created_at=datetime.now(UTC), combo=combo, parts="{}", config="{}",
               dataset="digits", seed=i, device="cpu", epochs=1, nelbo_nats=1.0, nll_nats=0.5,
               status="ok", vaereg_version="0", torch_version="0", **extra)


def test_the_schema_has_one_column_per_row_field_with_its_type_and_nullability():
    fields = {f.name: f for f in dataclasses.fields(Row)}
    assert SCHEMA.names == list(fields)
    required = {name for name, f in fields.items() if f.default is dataclasses.MISSING}
    assert {f.name for f in SCHEMA if not f.nullable} == required
    assert SCHEMA.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert SCHEMA.field("seed").type == pa.int64() and SCHEMA.field("fid").type == pa.float64()


def test_the_row_rejects_an_unknown_or_missing_column():
    with pytest.raises(TypeError, match="nll_nat"):
        row(0, nll_nat=1.0)  # a misspelled column never silently becomes null
    with pytest.raises(TypeError, match="status"):
        Row(run_id="r", created_at=datetime.now(UTC), combo="c", parts="{}", config="{}", dataset="d", seed=0,
            device="cpu", epochs=1, vaereg_version="0", torch_version="0")


def test_a_value_of_the_wrong_type_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        append_row(tmp_path, row(0, fid="low"))
    assert not list(tmp_path.iterdir())


WRITER = """
import sys
from pathlib import Path
from tests.test_results import row
from vaereg_harness.results import append_row
for i in range(int(sys.argv[2])):
    append_row(Path(sys.argv[1]), row(i, combo=sys.argv[3]))
"""


def test_two_processes_writing_at_once_lose_no_rows(tmp_path):
    target = tmp_path / "results"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(target), "40", name]) for name in ("a", "b")
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    table = read_results(target)
    assert table.num_rows == 80
    assert sorted(table.column("combo").to_pylist()) == ["a"] * 40 + ["b"] * 40
    assert not list(target.glob(".*tmp"))


def test_rows_written_before_a_column_existed_read_back_with_nulls(tmp_path):
    old = pa.schema([f for f in SCHEMA if f.name != "fid"])  # a file from before 'fid'
    values = dataclasses.asdict(row(0))
    del values["fid"]
    pq.write_table(pa.Table.from_pylist([values], schema=old), tmp_path / "old.parquet")
    append_row(tmp_path, row(1, fid=12.5))
    table = read_results(tmp_path)
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert sorted(table.column("fid").to_pylist(), key=lambda v: v is None) == [12.5, None]


def test_empty_or_missing_store_reads_as_empty_table(tmp_path):
    assert read_results(tmp_path / "none").num_rows == 0
    assert read_results(tmp_path).schema.names == SCHEMA.names
