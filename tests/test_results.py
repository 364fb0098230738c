"""The Parquet results store: the typed row and its schema (fixed columns and every registered
metric's declared columns), atomic appends, concurrent writers, schema evolution."""

import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vaereg.registry import get_registry
from vaereg_harness.metrics import DEFAULTS
from vaereg_harness.store.results import FIXED, Row, append_row, read_results, recorded, schema

PARQUET = {int: pa.int64(), float: pa.float64(), str: pa.string()}


def row(i: int, combo: str = "gaussian", scores: dict | None = None, **extra) -> Row:
    fields = {"parts": "{}", "config": "{}", "dataset": "digits", "device": "cpu", "epochs": 1, "status": "ok",
              "vaereg_version": "0", "torch_version": "0", **extra}
    return Row(run_id=f"r{i}", created_at=datetime.now(UTC), combo=combo, seed=i,
               scores={"nelbo_nats": 1.0, "nll_nats": 0.5, **(scores or {})}, **fields)


def declared_columns() -> list:
    return [c for entry in get_registry().entries["metric"].values() for c in entry.cls.columns]


def test_the_schema_is_the_row_fields_then_every_metric_column_with_its_declared_type():
    fields = {f.name: f for f in dataclasses.fields(Row) if f.name != "scores"}
    declared = declared_columns()
    assert schema().names == [*fields, *(c.name for c in declared)]
    required = {name for name, f in fields.items() if f.default is dataclasses.MISSING}
    assert {f.name for f in schema() if not f.nullable} == required  # every metric column is nullable
    for column in declared:
        assert schema().field(column.name).type == PARQUET[column.type], column.name
    assert schema().field("created_at").type == pa.timestamp("us", tz="UTC")
    assert schema().field("seed").type == pa.int64() and schema().field("fid").type == pa.float64()
    assert schema().field("iw_samples").type == pa.int64() and schema().field("fid_note").type == pa.string()


def test_a_row_holds_exactly_the_schema_columns_and_writes_them_back(tmp_path):
    written = row(3, scores={"fid": 12.5, "iw_samples": 7, "fid_note": "why"}, samples_png=str(tmp_path / "run/s.png"),
                  run_dir=str(tmp_path / "run"))
    assert list(written.as_dict()) == schema().names
    append_row(tmp_path / "store", written)
    (stored,) = pq.read_table(next((tmp_path / "store").glob("*.parquet"))).to_pylist()
    assert stored["run_dir"] == "../run" and stored["samples_png"] == "../run/s.png"  # relative to the store
    (back,) = read_results(tmp_path / "store").to_pylist()
    assert back == {**written.as_dict(), "created_at": back["created_at"]}
    assert back["fid"] == 12.5 and back["iw_samples"] == 7 and back["codebook_usage"] is None


def test_a_row_from_before_run_dir_reads_back_with_the_folder_of_its_grids(tmp_path):
    append_row(tmp_path, row(1, samples_png="old-runs/digits-gaussian/samples.png"))
    append_row(tmp_path, row(2))  # no grids: no folder to name
    folder = str(Path("old-runs/digits-gaussian").absolute())
    assert [r["run_dir"] for r in read_results(tmp_path).to_pylist()] == [folder, None]


def test_the_row_rejects_an_unknown_or_missing_column():
    with pytest.raises(TypeError, match="nll_nat"):
        row(0, scores={"nll_nat": 1.0})  # a misspelled metric column never silently becomes null
    with pytest.raises(TypeError, match="run_dirr"):
        row(0, run_dirr="x")
    with pytest.raises(TypeError, match="status"):
        Row(run_id="r", created_at=datetime.now(UTC), combo="c", parts="{}", config="{}", dataset="d", seed=0,
            device="cpu", epochs=1, vaereg_version="0", torch_version="0")


def test_a_value_of_the_wrong_type_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        append_row(tmp_path, row(0, scores={"fid": "low"}))
    assert not list(tmp_path.iterdir())


WRITER = """
import sys
from pathlib import Path
from tests.test_results import row
from vaereg_harness.store.results import append_row
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
    old = pa.schema([f for f in schema() if f.name != "fid"])  # a file from before 'fid'
    values = row(0).as_dict()
    del values["fid"]
    pq.write_table(pa.Table.from_pylist([values], schema=old), tmp_path / "old.parquet")
    append_row(tmp_path, row(1, scores={"fid": 12.5}))
    table = read_results(tmp_path)
    assert table.schema.equals(schema(), check_metadata=False)
    assert sorted(table.column("fid").to_pylist(), key=lambda v: v is None) == [12.5, None]


def test_a_column_no_registered_metric_declares_is_dropped_on_read(tmp_path):
    """A file holding a column of a metric whose plugin is gone (in another column order, as
    schema 4 wrote) reads back without it; the other rows and columns are intact."""
    values = {"retired_score": 0.25, **row(0, scores={"fid": 3.0}).as_dict()}
    fields = [pa.field("retired_score", pa.float64()), *(f for f in schema() if f.name != "nll_bpd")][::-1]
    del values["nll_bpd"]
    pq.write_table(pa.Table.from_pylist([values], schema=pa.schema(fields)), tmp_path / "old.parquet")
    append_row(tmp_path, row(1))
    table = read_results(tmp_path)
    assert table.schema.names == schema().names and "retired_score" not in table.schema.names
    assert sorted(table.column("seed").to_pylist()) == [0, 1]
    assert table.column("fid").to_pylist() == [3.0, None] and table.column("nll_bpd").to_pylist() == [None, None]


def test_a_row_written_before_configs_named_their_metrics_counts_as_the_defaults(tmp_path):
    config = {"parts": {}, "iw_samples": 5}
    append_row(tmp_path, row(0, config=json.dumps(config), config_hash="abc"))
    today = {"metrics": list(DEFAULTS), "metric_options": {}}  # what a run's configuration holds now
    assert recorded(tmp_path, "abc", json.dumps({**config, **today}))
    assert not recorded(tmp_path, "abc", json.dumps({**config, **today, "metrics": [*DEFAULTS, "extra"]}))
    assert not recorded(tmp_path, "abc", json.dumps({**config, **today, "metric_options": {"kid": {"subsets": 2}}}))
    assert not recorded(tmp_path, "abd", json.dumps({**config, **today}))


def test_empty_or_missing_store_reads_as_empty_table(tmp_path):
    assert read_results(tmp_path / "none").num_rows == 0
    assert read_results(tmp_path).schema.names == schema().names
    assert FIXED.names == schema().names[:len(FIXED.names)]
