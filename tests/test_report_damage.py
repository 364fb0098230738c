"""``vaereg report`` over a results store whose files were damaged or hold hostile names: bad
``metrics.jsonl`` lines are skipped and counted per run, every run still shows, names are
escaped for Markdown and HTML, and figure files never collide between data sets."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from vaereg_harness.cli import main
from vaereg_harness.store.results import read_results, schema

HOSTILE = "<script>alert(1)</script> a|b\nc `x` & <b> $\\frac$"  # $: matplotlib's mathtext


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A store of two runs of one epoch (seeds 0 and 1), made by the real CLI."""
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # rows name their run folders relative to it
        invoke("eval", "--combo", "gaussian", "--epochs", "1", "--no-fid", "--iw-samples", "2", "--quiet",
               "--seed", "0", "--seed", "1")
    return folder


@pytest.fixture
def store(built, tmp_path, monkeypatch) -> Path:
    """A copy of the built store to damage, as the working folder."""
    copy = tmp_path / "store"
    shutil.copytree(built, copy)
    monkeypatch.chdir(copy)
    return copy


def run_folder(seed: int) -> Path:
    [folder] = Path("vaereg-runs").glob(f"*-seed{seed}-*")
    return folder


def rewrite_rows(change) -> None:
    """Apply ``change(row)`` to every row of the results store, in place."""
    for file in Path("vaereg-results").glob("*.parquet"):
        table = pq.read_table(file)
        pq.write_table(pa.Table.from_pylist([change(r) for r in table.to_pylist()], schema=table.schema), file)


def report(*args: str) -> tuple[str, str]:
    invoke("report", "--out", "rep", *args)
    return Path("rep/report.md").read_text(encoding="utf-8"), Path("rep/index.html").read_text(encoding="utf-8")


def test_damaged_metrics_lines_are_skipped_and_counted_per_run_and_every_run_still_shows(store):
    log = run_folder(0) / "metrics.jsonl"
    good = log.read_bytes()
    log.write_bytes(good + b"\xff\xfe\x00\x9c binary\n" + b'{"epoch": 1, "loss": 3.0}\n'
                    + b'{"stage": "autoencoder", "epoch": [1], "loss": 2.0}\n')
    md, page = report()
    notes = [line for line in md.splitlines() if "metrics.jsonl" in line and "skipped" in line]
    assert len(notes) == 1, notes  # one line, for the damaged run only
    assert "3 " in notes[0] and "seed 0" in notes[0] and "seed 1" not in notes[0]
    assert "seed 0" in page and "3 damaged lines" in page
    for seed in (0, 1):  # every run still shows: its grids under its label, its row in the table
        assert f"#### gaussian (seed {seed})" in md
    assert len([line for line in md.splitlines() if line.startswith("| gaussian")]) == 2
    assert len(list(Path("rep/figures").glob("*curves*.png"))) == 1  # the good lines are still plotted


def test_a_log_of_only_damage_still_reports_the_other_run(store):
    (run_folder(1) / "metrics.jsonl").write_bytes(b"\x00\x01\x02\xff\n[1, 2]\n")
    md, _ = report()
    notes = [line for line in md.splitlines() if "metrics.jsonl" in line and "skipped" in line]
    assert len(notes) == 1 and "2 " in notes[0] and "seed 1" in notes[0], notes
    assert "#### gaussian (seed 0)" in md and "#### gaussian (seed 1)" in md


def test_names_and_title_are_escaped_for_markdown_and_html(store):
    rewrite_rows(lambda r: r | {"dataset": HOSTILE, "combo": HOSTILE})
    md, page = report("--title", HOSTILE)
    for text in (md, page):
        assert "<script>alert" not in text and "<b>" not in text  # the page's own script aside
    assert "&lt;script&gt;" in md
    header, rule, *rows = [line for line in md.splitlines() if line.startswith("|")]
    cells = len(re.split(r"(?<!\\)\|", header))
    assert rule.count("|") == cells - 1
    assert len(rows) == 2 and all(len(re.split(r"(?<!\\)\|", row)) == cells for row in rows), rows
    assert "`" not in md.replace("\\`", "")  # no code span opened by a name
    title = md.splitlines()[0]
    assert title.startswith("# ") and "alert(1)" in title  # the whole title on its line


def test_data_sets_whose_names_differ_in_punctuation_get_their_own_figures(store):
    names = {str(run_folder(0)): "my data", str(run_folder(1)): "my/data"}
    rewrite_rows(lambda r: r | {"dataset": names[str(Path(r["run_dir"]).relative_to("../"))]})
    md, _ = report()
    curves = re.findall(r"!\[[^]]*\]\((figures/[^)]*curves[^)]*)\)", md)
    assert len(curves) == 2 and len(set(curves)) == 2, curves
    first, second = (Path("rep", c).read_bytes() for c in curves)
    assert first != second  # each data set's figure draws its own run's curve



def test_rows_find_their_runs_from_any_working_folder_and_after_the_project_moves(store, tmp_path, monkeypatch):
    """Rows store paths relative to the results folder: the store copied with its runs finds the
    copies (``store`` is such a copy), from any working folder."""
    rows = read_results(store / "vaereg-results").to_pylist()
    for r in rows:
        for column in ("run_dir", "samples_png", "reconstructions_png"):
            assert Path(r[column]).is_absolute() and Path(r[column]).is_relative_to(store), (column, r[column])
            assert Path(r[column]).exists()
    stored = pq.read_table(next(Path("vaereg-results").glob("*.parquet"))).to_pylist()[0]
    assert stored["run_dir"].startswith("../vaereg-runs/")
    monkeypatch.chdir(tmp_path)
    invoke("report", "--results", str(store / "vaereg-results"), "--out", "elsewhere")
    md = (tmp_path / "elsewhere" / "report.md").read_text()
    assert md.count("-samples.png") == 2 and md.count("-reconstructions.png") == 2  # both runs' grids


def test_a_row_with_paths_relative_to_its_old_working_folder_still_finds_its_run(store, tmp_path, monkeypatch):
    """Rows of vaereg 0.2 (schema 6) hold paths relative to where the run started: read from the
    current folder, else beside the results folder."""
    def legacy(r):
        return {**r, **{c: str(Path(r[c]).relative_to(store)) for c in ("run_dir", "samples_png",
                                                                          "samples_mean_png", "reconstructions_png")}}

    for file in Path("vaereg-results").glob("*.parquet"):
        rows = read_results(store / "vaereg-results").to_pylist()
        old = schema().with_metadata({b"vaereg.schema_version": b"6"})
        pq.write_table(pa.Table.from_pylist([legacy(r) for r in rows if file.name.endswith(
            f"{r['run_id']}-" + file.name.rsplit("-", 1)[1])] or [legacy(rows[0])], schema=old), file)
    for where in (store, tmp_path):
        monkeypatch.chdir(where)
        for r in read_results(store / "vaereg-results").to_pylist():
            assert Path(r["run_dir"]) == store / "vaereg-runs" / Path(r["run_dir"]).name
            assert Path(r["samples_png"]).is_file()
