"""The Parquet results store: atomic appends, concurrent writers, schema evolution."""

import subprocess
import sys
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from vaereg_harness.results import SCHEMA, append_row, read_results


def row(i: int, combo: str = "gaussian") -> dict:
    return {
        "run_id": f"r{i}", "created_at": datetime.now(UTC), "combo": combo, "parts": "{}", "config": "{}",
        "dataset": "digits", "seed": i, "device": "cpu", "epochs": 1, "nelbo_nats": 1.0, "nll_nats": 0.5,
        "status": "ok", "vaereg_version": "0", "torch_version": "0",
    }


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
    pq.write_table(pa.Table.from_pylist([row(0)], schema=old), tmp_path / "old.parquet")
    append_row(tmp_path, {**row(1), "fid": 12.5})
    table = read_results(tmp_path)
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert sorted(table.column("fid").to_pylist(), key=lambda v: v is None) == [12.5, None]


def test_empty_or_missing_store_reads_as_empty_table(tmp_path):
    assert read_results(tmp_path / "none").num_rows == 0
    assert read_results(tmp_path).schema.names == SCHEMA.names
