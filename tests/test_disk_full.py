"""A checkpoint write that fails partway (``torch.save``'s ``RuntimeError`` when the disk fills,
or an ``OSError`` ENOSPC) is one ``Error:`` line naming the checkpoint, exit 1; the temporary
file is removed and the last good checkpoint still loads."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from vaereg_harness.cli import main
from vaereg_harness.run import checkpoint


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small model of this module."""


def torch_stream_error() -> Exception:
    return RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")


def enospc() -> Exception:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("failure", [torch_stream_error, enospc])
def test_a_checkpoint_write_that_fills_the_disk_is_one_line_and_keeps_the_last_good_one(tmp_path, monkeypatch,
                                                                                        failure):
    monkeypatch.chdir(tmp_path)
    real_save = torch.save
    saved: list[dict] = []  # the weights of each checkpoint written whole

    def save_then_fill_the_disk(obj, f, *args, **kwargs):
        if not saved:  # the first checkpoint (after epoch 1) is written whole
            saved.append({k: v.clone() for k, v in obj["model"].items() if isinstance(v, torch.Tensor)})
            return real_save(obj, f, *args, **kwargs)
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")  # then the disk fills partway through
        raise failure()

    monkeypatch.setattr(torch, "save", save_then_fill_the_disk)
    result = CliRunner().invoke(main, ["eval", "--combo", "gaussian", "--epochs", "2", "--no-fid",
                                       "--iw-samples", "2", "--checkpoint-every", "0", "--quiet"])
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught error
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    [path] = list(tmp_path.rglob("checkpoint.pt"))
    assert str(path.relative_to(tmp_path)) in errors[0] or str(path) in errors[0], errors[0]
    assert not [p for p in tmp_path.rglob("*.tmp")], "a temporary file was left behind"
    assert len(saved) == 1
    payload = checkpoint.load(path)  # the first, whole checkpoint, and a model rebuilds from it
    checkpoint.rebuild(payload, path)
    assert saved[0] and all(torch.equal(payload["model"][k], v) for k, v in saved[0].items())


def one_error_line(args: list[str], code: int = 1) -> str:
    result = CliRunner().invoke(main, args)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


RUN = ["eval", "--combo", "gaussian", "--epochs", "3", "--no-fid", "--iw-samples", "2", "--checkpoint-every", "0",
       "--quiet"]


def test_a_full_disk_under_the_metrics_log_is_one_line_naming_it_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real_open = Path.open

    class FillsAfterOneLine:
        def __init__(self, file):
            self.file, self.lines = file, 0

        def write(self, text):
            self.lines += 1
            if self.lines > 1:
                self.file.write(text[:5])  # the disk fills partway through the second record
                raise enospc()
            return self.file.write(text)

        def __getattr__(self, name):
            return getattr(self.file, name)

    def open_(path, *args, **kwargs):
        file = real_open(path, *args, **kwargs)
        return FillsAfterOneLine(file) if path.name == "metrics.jsonl" else file

    monkeypatch.setattr(Path, "open", open_)
    error = one_error_line(RUN)
    [log] = list(tmp_path.rglob("metrics.jsonl"))
    assert f"cannot write {log.relative_to(tmp_path)}" in error and "No space left" in error
    [path] = list(tmp_path.rglob("checkpoint.pt"))
    assert checkpoint.load(path)["epoch"] == 1  # the checkpoint before the failed record is whole
    assert not (tmp_path / "vaereg-results").exists() or not list((tmp_path / "vaereg-results").iterdir())


def test_a_full_disk_under_the_sample_grids_is_one_line_naming_the_grid(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)

    def half_a_png(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise enospc()

    monkeypatch.setattr(Image.Image, "save", half_a_png)
    error = one_error_line(RUN)
    assert "cannot write" in error and "samples.png" in error and "No space left" in error
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.png"))
    assert checkpoint.load(next(tmp_path.rglob("checkpoint.pt")))["epoch"] == 3  # training is kept for --resume


def test_a_full_disk_under_the_report_is_one_line_and_the_last_report_stays(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    monkeypatch.chdir(tmp_path)
    CliRunner().invoke(main, RUN)
    CliRunner().invoke(main, ["report", "--out", "rep"])
    before = {p: p.read_bytes() for p in (tmp_path / "rep").rglob("*") if p.is_file()}
    assert before

    def half_a_figure(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise enospc()

    monkeypatch.setattr(Figure, "savefig", half_a_figure)
    error = one_error_line(["report", "--out", "rep"])
    assert "cannot write rep/figures/" in error and "No space left" in error
    after = {p: p.read_bytes() for p in (tmp_path / "rep").rglob("*") if p.is_file()}
    assert after == before  # the earlier report is whole; no temporary file is left


def test_a_full_disk_under_the_results_store_keeps_the_row_and_every_earlier_one(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from vaereg_harness.store.results import read_results

    monkeypatch.chdir(tmp_path)
    CliRunner().invoke(main, [*RUN, "--seed", "1"])
    earlier = read_results(tmp_path / "vaereg-results").to_pylist()
    real_write = pq.write_table

    def store_full(table, where, *args, **kwargs):
        if "vaereg-results" in str(where):
            Path(where).write_bytes(b"PAR1 half")
            raise enospc()
        return real_write(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", store_full)
    error = one_error_line(RUN)
    assert "cannot write vaereg-results/" in error and "the row is kept in" in error
    monkeypatch.setattr(pq, "write_table", real_write)
    assert read_results(tmp_path / "vaereg-results").to_pylist() == earlier  # every earlier row intact
    assert not list(tmp_path.rglob("*.tmp"))
    CliRunner().invoke(main, [*RUN, "--seed", "2"])  # the next eval adds the kept row
    assert len(read_results(tmp_path / "vaereg-results").to_pylist()) == 3
