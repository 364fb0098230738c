"""The command line end to end on the embedded digits."""

import json

import pyarrow.parquet as pq
from PIL import Image

from tests.conftest import vaereg_cli
from vaereg_harness.store.results import read_results


def test_eval_writes_a_row_then_results_and_sample_read_it(tmp_path):
    proc = vaereg_cli("eval", "--combo", "gaussian", "--epochs", "3", "--iw-samples", "200", "--seed", "7",
                      "--set", "objective.warmup=0.3", "--quiet", cwd=tmp_path)
    assert "gaussian" in proc.stdout and "1 row(s) appended" in proc.stdout
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert row["combo"] == "gaussian" and row["seed"] == 7 and row["status"] == "ok" and row["iw_samples"] == 200
    assert row["nll_nats"] <= row["nelbo_nats"] + 0.5  # IS tightens the bound, up to Monte-Carlo noise
    assert 0 < row["nll_bpd"] < 10 and row["train_images_per_s"] > 0
    assert json.loads(row["parts"])["prior"] == {"name": "normal", "plugin": "gaussian", "version": "0.2.0"}
    assert json.loads(row["config"])["objective"]["warmup"] == 0.3
    # plain pyarrow reads the store too
    assert pq.read_table(tmp_path / "vaereg-results").num_rows == 1

    shown = vaereg_cli("results", cwd=tmp_path).stdout
    assert "gaussian" in shown and f"{row['nll_nats']:.2f}" in shown
    assert "no rows" in vaereg_cli("results", "--combo", "vq", cwd=tmp_path).stderr

    ckpt = next((tmp_path / "vaereg-runs").glob("*/checkpoint.pt"))
    vaereg_cli("sample", str(ckpt), "-n", "10", "-o", "grid.png", cwd=tmp_path)
    grid = Image.open(tmp_path / "grid.png")
    assert grid.mode == "L" and grid.size[0] >= 4 * 32  # 4 columns of 8x8 digits scaled to 32px


def test_plugins_lists_the_gaussian_plugin_and_its_parts(tmp_path):
    out = vaereg_cli("plugins", cwd=tmp_path).stdout
    assert out.startswith("vaereg plugin API 3") and "\ngaussian 0.2.0\n" in out
    for part in ("encoder    gaussian", "decoder    conv", "prior      normal", "likelihood dlogistic",
                 "preset     gaussian"):
        assert part in out


def test_sample_from_a_vq_pixelcnn_checkpoint(tmp_path):
    out = vaereg_cli("train", "--combo", "vq+pixelcnn", "--epochs", "1", "--quiet",
                     "--set", "prior.width=8", "--set", "encoder.width=16", cwd=tmp_path).stdout
    ckpt = out.strip().split("checkpoint ")[-1]
    vaereg_cli("sample", ckpt, "-n", "4", "-o", "codes.png", cwd=tmp_path)
    assert Image.open(tmp_path / "codes.png").size == (2 * 33 + 1, 2 * 33 + 1)


def test_vaereg_usage_errors_show_the_subcommand_usage_as_click_errors_do(tmp_path):
    ours = vaereg_cli("eval", "--combo", "nope", cwd=tmp_path, check=False)  # vaereg's own check
    clicks = vaereg_cli("eval", "--epochs", "x", cwd=tmp_path, check=False)  # click's own
    for proc in (ours, clicks):
        assert proc.returncode == 2
        first, second = proc.stderr.splitlines()[:2]  # the program is "python -m vaereg_harness.cli" here
        assert first.startswith("Usage: ") and first.endswith(" eval [OPTIONS]"), proc.stderr
        assert second.startswith("Try '") and second.endswith(" eval --help' for help."), proc.stderr
