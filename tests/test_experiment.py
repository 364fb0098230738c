"""Experiment files: every option from a TOML file, the command line over it, sweeps over
combos and seeds, run folders keyed by the training settings."""

import json
import tomllib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import vaereg_cli
from vaereg_harness.cli import main
from vaereg_harness.cli.experiment import option_names
from vaereg_harness.store.results import read_results


def image_folder(root):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def test_every_option_can_come_from_the_file_and_the_command_line_overrides_it(tmp_path):
    # A value other than the default for every option vaereg eval has.
    values = {
        "combo": ["gaussian-mlp", "vq"], "dataset": f"folder:{image_folder(tmp_path / 'imgs')}",
        "data_root": "elsewhere", "download": True, "skip_bad_images": True, "condition": "label", "epochs": 3,
        "prior_epochs": 2, "image_mode": "L",
        "batch_size": 32, "lr": 0.002, "seed": [1, 2], "deterministic": True, "compile": True, "device": "cpu",
        "threads": 1, "checkpoint_every": 5.0, "validation_images": 4,
        "out": "runs", "resume": True, "quiet": True, "log": ["tensorboard"], "iw_samples": 10, "iw_chunk": 5,
        "eval_images": 4, "results": "rows", "fid": False, "fid_samples": 50, "fid_extractor": "classifier",
        "inception_weights": "weights.pth", "cache_dir": "cache", "metrics": ["nll", "fid"],
    }
    secondary = {"no_fid", "no_download"}
    assert set(values) | {"set"} == set(option_names(main.commands["eval"])) - secondary  # no option is missed

    text = "\n".join(f"{key.replace('_', '-') if i % 2 else key} = {json.dumps(value)}"  # dashes or underscores
                     for i, (key, value) in enumerate(values.items()))
    text += "\n[set.objective]\nbeta = 0.5\nwarmup = 0.2\n[set.encoder]\nwidth = 16\n"
    (tmp_path / "exp.toml").write_text(text)
    printed = vaereg_cli("eval", "--config", "exp.toml", "--print-config", cwd=tmp_path).stdout
    resolved = tomllib.loads(printed)
    assert {key: resolved[key] for key in values} == values
    assert resolved["set"] == {"objective": {"beta": 0.5, "warmup": 0.2}, "encoder": {"width": 16}}
    assert printed.count("\n#   ") == 4  # two combos by two seeds
    # the printed experiment reads back as itself
    (tmp_path / "again.toml").write_text(printed)
    assert vaereg_cli("eval", "--config", "again.toml", "--print-config", cwd=tmp_path).stdout == printed

    over = vaereg_cli("eval", "--config", "exp.toml", "--print-config", "--epochs", "7", "--seed", "5",
                      "--combo", "gaussian", "--fid", "--set", "objective.beta=0.25", cwd=tmp_path).stdout
    resolved = tomllib.loads(over)
    assert resolved["epochs"] == 7 and resolved["seed"] == [5] and resolved["combo"] == ["gaussian"]
    assert resolved["fid"] is True and resolved["lr"] == 0.002  # the file's, where the line says nothing
    assert resolved["set"]["objective"] == {"beta": 0.25, "warmup": 0.2}  # --set merges over the file's


@pytest.mark.slow
def test_a_sweep_writes_a_row_per_combo_and_seed_each_in_its_own_folder(tmp_path):
    (tmp_path / "exp.toml").write_text(
        'combo = ["gaussian-mlp", "vq"]\nseed = [0, 1]\nepochs = 1\niw-samples = 2\nno_fid = true\nquiet = true\n'
        "lr = 0.002\n[set.objective]\nbeta = 0.9\n")
    vaereg_cli("eval", "--config", "exp.toml", cwd=tmp_path)
    rows = read_results(tmp_path / "vaereg-results").to_pylist()
    assert sorted((r["combo"], r["seed"]) for r in rows) == [("gaussian-mlp", 0), ("gaussian-mlp", 1), ("vq", 0),
                                                            ("vq", 1)]
    folders = {r["run_dir"] for r in rows}
    assert len(folders) == 4 and all(r["run_dir"].endswith(r["config_hash"]) for r in rows)
    for r in rows:
        config = json.loads(r["config"])  # the resolved configuration
        assert config["train"]["lr"] == 0.002 and config["train"]["seed"] == r["seed"]
        assert config["objective"]["beta"] == 0.9 and config["iw_samples"] == 2
        assert (tmp_path / r["run_dir"] / "checkpoint.pt").is_file()

    def planned(*extra):
        out = vaereg_cli("eval", "--config", "exp.toml", "--print-config", *extra, cwd=tmp_path).stdout
        return {str((tmp_path / line.split(": ")[1]).absolute()) for line in out.splitlines()
                if line.startswith("#   ")}

    assert planned() == folders  # the same settings find their folders again
    assert planned("--iw-samples", "50") == folders  # evaluation options train nothing new
    assert not planned("--lr", "0.003") & folders  # another learning rate: new folders


def test_a_bad_experiment_file_is_one_line_and_exit_2(tmp_path):
    cases = {
        "nope = 1\n": "unknown key 'nope'; keys are the long options",
        "combo = [\n": "not valid TOML",
        "epochs = 'many'\n": "'many' is not a valid integer",
        "set = 3\n": "'set' should be [set.GROUP] tables",
    }
    for text, message in cases.items():
        (tmp_path / "exp.toml").write_text(text)
        proc = vaereg_cli("eval", "--config", "exp.toml", "--combo", "gaussian", cwd=tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = vaereg_cli("eval", "--config", "missing.toml", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "missing.toml" in proc.stderr
    # an eval-only key is ignored by train, so one file serves both
    (tmp_path / "exp.toml").write_text('combo = "gaussian-mlp"\niw_samples = 5\n')
    assert "gaussian-mlp seed 0" in vaereg_cli("train", "--config", "exp.toml", "--print-config", cwd=tmp_path).stdout
