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
