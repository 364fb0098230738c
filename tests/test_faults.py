"""Bad input and faults: image folders, crafted checkpoints, a damaged results store, a full
disk (simulated by patching the write layer), divergence, stale temporary files, and inputs
that could never fit. Each case is one clear line, and nothing already written is lost."""

import errno
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.conftest import vaereg_cli
from tests.test_data import idx_folder
from vaereg import UsageError, VaeregError
from vaereg_harness.api import RunConfig, create_model, train_model
from vaereg_harness.cli import main
from vaereg_harness.data.folder import load_folder
from vaereg_harness.run import checkpoint
from vaereg_harness.run import trainer as train_module
from vaereg_harness.run.config import TrainConfig
from vaereg_harness.run.trainer import TrainingDiverged
from vaereg_harness.store import files
from vaereg_harness.store.results import read_results


def grey_folder(root, n=20):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / f"{i:02d}.png")
    return root


@pytest.mark.parametrize("kind", ["corrupt", "text", "broken-link", "folder", "bomb"])
def test_an_unreadable_image_is_one_line_naming_it_or_skipped_and_counted(tmp_path, kind, monkeypatch, capsys):
    root = grey_folder(tmp_path / "imgs")
    bad = root / "zz.png"
    if kind == "corrupt":
        bad.write_bytes((root / "00.png").read_bytes()[:40])
    elif kind == "text":
        bad.write_text("not an image")
    elif kind == "broken-link":
        bad.symlink_to(tmp_path / "missing.png")
    elif kind == "folder":
        bad.mkdir()
    else:  # a decompression bomb: over twice Pillow's pixel limit
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64)  # the 8x8 images are at the limit
        Image.new("L", (16, 16)).save(bad)
    with pytest.raises(UsageError, match=r"zz\.png: .*; remove it, or pass --skip-bad-images") as caught:
        load_folder(root)
    assert "\n" not in str(caught.value)
    if kind == "bomb":
        assert "too large to read safely" in str(caught.value)
    data = load_folder(root, skip_bad_images=True)
    assert data.train.shape[0] + data.test.shape[0] == 20
    assert "skipped 1 unreadable image(s)" in capsys.readouterr().err


def test_sixteen_bit_images_are_scaled_and_mixed_modes_refused(tmp_path):
    root = grey_folder(tmp_path / "imgs")
    deep = np.array([[0, 257 * 100, 65535, 32768]] * 4 + [[65535] * 4] * 4, dtype=np.uint16)
    deep = np.tile(deep, (1, 2))
    Image.fromarray(deep).save(root / "16bit.png")
    data = load_folder(root)
    images = torch.cat([data.train, data.test])
    scaled = torch.from_numpy(np.round(deep / 257).astype(np.uint8))
    assert any(torch.equal(x[0], scaled) for x in images)  # 65535 -> 255, 25700 -> 100, 32768 -> 128
    Image.new("RGB", (8, 8), (255, 0, 0)).save(root / "colour.png")
    with pytest.raises(UsageError, match=r"mixes greyscale \(.*\) and colour \(.*colour\.png\) images; give "
                                         r"--image-mode L or RGB"):
        load_folder(root)
    grey = load_folder(root, image_mode="L")
    red = np.array(Image.new("RGB", (8, 8), (255, 0, 0)).convert("L"))  # Pillow's own conversion
    assert grey.spec.channels == 1 and any(torch.equal(x[0], torch.from_numpy(red)) for x in grey.train)
    colour = load_folder(root, image_mode="RGB")
    assert colour.spec.channels == 3 and all(torch.equal(x[0], x[1]) for x in colour.test)  # grey ones, repeated


def saved_checkpoint(digits, tmp_path):
    config = RunConfig(train=TrainConfig(epochs=1, device="cpu", checkpoint_every=0))
    model = create_model("gaussian-mlp", digits, {"encoder": {"width": 4}, "decoder": {"width": 4}}, config)
    _, path = train_model(model, digits, config, tmp_path, progress=False)
    return torch.load(path, weights_only=True)


@pytest.mark.slow  # a CLI run per damage
@pytest.mark.parametrize("damage", ["missing-key", "bad-spec", "bad-json", "wrong-shape", "truncated", "code"])
def test_every_malformed_checkpoint_is_one_line_without_weights_only_advice(digits, tmp_path, damage):
    payload = saved_checkpoint(digits, tmp_path / "run")
    path = tmp_path / "bad.pt"
    if damage == "missing-key":
        del payload["canonical"]
    elif damage == "bad-spec":
        payload["data"] = {"name": "digits", "channels": "one"}
    elif damage == "bad-json":
        payload["options"] = "{not json"
    elif damage == "wrong-shape":
        key = next(k for k, v in payload["model"].items() if torch.is_tensor(v) and v.ndim == 2)
        payload["model"][key] = torch.zeros(3, 3)
    torch.save(payload, path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    if damage == "code":
        class Evil:
            def __reduce__(self):
                return (os.system, ("echo pwned",))

        torch.save({**payload, "evil": Evil()}, path)
    with pytest.raises(UsageError) as caught:
        checkpoint.rebuild(checkpoint.load(path), path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message and "weights_only" not in message, message
    proc = vaereg_cli("sample", str(path), "-o", "g.png", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "weights_only" not in proc.stderr


def test_a_damaged_or_foreign_results_file_is_named_and_skipped(tmp_path):
    vaereg_cli("eval", "--combo", "gaussian-mlp", "--epochs", "1", "--iw-samples", "2", "--no-fid", "--quiet",
               cwd=tmp_path)
    store = tmp_path / "vaereg-results"
    (store / "corrupt.parquet").write_bytes(b"PAR1 not really")
    pq.write_table(pa.table({"a": [1, 2]}), store / "foreign.parquet")
    assert read_results(store, on_skip=lambda *_: None).num_rows == 1
    proc = vaereg_cli("results", cwd=tmp_path)
    assert "gaussian-mlp" in proc.stdout and "Traceback" not in proc.stderr
    assert "skipped" in proc.stderr and "corrupt.parquet" in proc.stderr and "foreign.parquet" in proc.stderr
    # the same run again is not recorded twice
    again = vaereg_cli("eval", "--combo", "gaussian-mlp", "--epochs", "1", "--iw-samples", "2", "--no-fid", "--quiet",
                       cwd=tmp_path)
    assert "already recorded" in again.stderr and read_results(store, on_skip=lambda *_: None).num_rows == 1


def full_disk(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_one_line_naming_the_path_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "kept.txt"
    target.write_text("before")
    with pytest.raises(VaeregError, match=r"cannot write .*kept\.txt: No space left on device"):
        files.atomic_write(target, lambda tmp: (tmp.write_text("partial"), full_disk()))
    assert target.read_text() == "before" and sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pq, "write_table", full_disk)  # the results store's write layer
    result = CliRunner().invoke(main, ["eval", "--combo", "gaussian-mlp", "--epochs", "1", "--iw-samples", "2",
                                       "--no-fid", "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "cannot write vaereg-results/" in result.output and "No space left on device" in result.output
    assert not list((tmp_path / "vaereg-results").iterdir())  # no temporary or partial file


def test_a_row_the_store_cannot_take_is_kept_and_added_by_the_next_eval(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_table = pq.write_table

    def results_disk_full(table, where, *args, **kwargs):
        if "vaereg-results" in str(where):
            full_disk()
        return write_table(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", results_disk_full)
    run = ["eval", "--combo", "gaussian-mlp", "--epochs", "1", "--iw-samples", "2", "--no-fid", "--quiet"]
    result = CliRunner().invoke(main, run)
    assert result.exit_code == 1 and "the row is kept in" in result.output, result.output
    (kept,) = tmp_path.glob("vaereg-runs/*/unrecorded-row.parquet")
    monkeypatch.setattr(pq, "write_table", write_table)  # space again
    result = CliRunner().invoke(main, run)
    assert result.exit_code == 0 and "could not record is now in" in result.output, result.output
    rows = read_results(tmp_path / "vaereg-results").to_pylist()
    assert len(rows) == 1 and not kept.exists()  # recovered, and the re-run is not recorded twice
    assert "already recorded" in result.output


def test_stale_temporary_files_of_killed_writers_are_removed(tmp_path):
    dead = tmp_path / ".checkpoint.pt.999999999.deadbeef.tmp"
    dead.write_bytes(b"half a checkpoint")
    files.atomic_write(tmp_path / "checkpoint.pt", lambda tmp: tmp.write_bytes(b"whole"))
    assert not dead.exists() and (tmp_path / "checkpoint.pt").read_bytes() == b"whole"


def test_weights_are_checked_before_a_checkpoint_is_written(digits, tmp_path, monkeypatch):
    config = RunConfig(train=TrainConfig(epochs=3, batch_size=128, device="cpu", checkpoint_every=0))
    model = create_model("gaussian-mlp", digits, {"encoder": {"width": 4}, "decoder": {"width": 4}}, config)
    steps = -(-digits.train.shape[0] // 128)
    calls = {"n": 0}

    def poison_after_the_last_step_of_epoch_2():  # runs right after optimizer.step()
        calls["n"] += 1
        if calls["n"] == 2 * steps:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    monkeypatch.setattr(train_module.threads, "tick", poison_after_the_last_step_of_epoch_2)
    with pytest.raises(TrainingDiverged, match="weights became non-finite in the autoencoder stage, epoch 2; "
                                               "the last good checkpoint is kept"):
        train_model(model, digits, config, tmp_path, progress=False)
    payload = checkpoint.load(next(tmp_path.glob("*/checkpoint.pt")))
    assert payload["epoch"] == 1 and all(v.isfinite().all() for v in payload["model"].values() if torch.is_tensor(v))


def test_divergence_in_the_first_epoch_names_no_checkpoint(tmp_path):
    proc = vaereg_cli("train", "--combo", "gaussian-mlp", "--epochs", "2", "--lr", "10", "--quiet", cwd=tmp_path,
                      check=False)
    assert proc.returncode == 1 and "no checkpoint was written" in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("vaereg-runs/*/checkpoint.pt"))


def test_settings_that_could_never_fit_are_refused_before_any_work(tmp_path):
    with pytest.raises(UsageError, match="iw_chunk=1000000000 is out of range"):
        RunConfig(iw_chunk=10**9)
    with pytest.raises(UsageError, match="lr=NaN is not finite"):
        TrainConfig(lr=float("nan"))
    idx_folder(tmp_path / "fm", "flat", gz=True)
    proc = vaereg_cli("eval", "--combo", "gaussian", "--dataset", "fashion-mnist", "--data-root", "fm",
                      "--iw-chunk", "65536", "--no-fid", "--epochs", "1", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "lower --iw-chunk" in proc.stderr, proc.stderr
    for option in ("--results", "--out"):
        where = tmp_path / option.strip("-")
        where.mkdir()
        (where / "a-file").write_text("mine")
        proc = vaereg_cli("eval", "--combo", "gaussian-mlp", option, "a-file", cwd=where, check=False)
        assert proc.returncode == 2 and "a-file is a file, not a folder" in proc.stderr
        assert (where / "a-file").read_text() == "mine" and [p.name for p in where.iterdir()] == ["a-file"]
