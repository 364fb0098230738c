"""Experiment files are typed strictly: a value of the wrong TOML type (a string for a boolean,
a float for a seed, a number for a path, a list for a scalar, a nested list, an infinite
number) and a sweep over the run cap are each one ``Error:`` line naming the key, exit 2,
with nothing written."""

import pytest
from click.testing import CliRunner

from vaereg_harness.cli import main

CAP = 1000  # the documented default of --max-runs

CASES = {
    "lr-inf": ("lr = inf", "lr"),
    "lr-nan": ("lr = nan", "lr"),
    "epochs-1e400": ("epochs = 1e400", "epochs"),
    "checkpoint-every-1e400": ("checkpoint-every = 1e400", "checkpoint-every"),
    "lr-huge-int": (f"lr = {10**400}", "lr"),  # past every float
    "epochs-huge-int": (f"epochs = {10**400}", "epochs"),  # past TOML's 64-bit integers
    "epochs-float": ("epochs = 2.5", "epochs"),
    "data-root-number": ("data-root = 5", "data-root"),
    "results-number": ("results = 3", "results"),
    "out-number": ("out = 2.5", "out"),
    "dataset-number": ("dataset = 7", "dataset"),
    "seed-nested": ("seed = [[1]]", "seed"),
    "combo-nested": ('combo = [["gaussian"]]', "combo"),
    "metrics-nested": ('metrics = [["nll"]]', "metrics"),
    "combo-number": ("combo = [1]", "combo"),
    "lr-list": ("lr = [0.1, 0.2]", "lr"),
    "epochs-list": ("epochs = [1, 2]", "epochs"),
    "device-list": ('device = ["cpu"]', "device"),
    "no_fid-string": ('no_fid = "false"', "no_fid"),
    "fid-string": ('fid = "true"', "fid"),
    "quiet-number": ("quiet = 1", "quiet"),
    "seed-float": ("seed = [1.5, 2]", "seed"),
    "seed-scalar-float": ("seed = 1.5", "seed"),
    "seed-bool": ("seed = true", "seed"),
    "epochs-bool": ("epochs = true", "epochs"),
    "threads-bool": ("threads = true", "threads"),
    "threads-float": ("threads = 1.5", "threads"),
    "max-runs-in-file": ("max-runs = 5000", "max-runs"),  # a large sweep is confirmed on the command line
    # a sweep over the cap is refused before any data is read (this data set does not exist)
    "sweep-seeds": (f"seed = {list(range(CAP + 1))}\ndataset = 'folder:missing'", "max-runs"),
    "sweep-product": (f"combo = ['gaussian', 'vq', 'gaussian-mlp']\nseed = {list(range(CAP // 3 + 1))}\n"
                      f"dataset = 'folder:missing'", "max-runs"),
}


BASE = {"combo": "'gaussian'", "epochs": "1", "no_fid": "true", "quiet": "true"}


def invoke(tmp_path, text: str, *args: str):
    path = tmp_path / "exp.toml"
    given = {line.split("=")[0].strip().replace("-", "_") for line in text.splitlines()}
    base = "".join(f"{key} = {value}\n" for key, value in BASE.items() if key not in given)
    path.write_text(base + text + "\n")
    result = CliRunner().invoke(main, ["eval", "--config", str(path), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def error_line(result) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize("text,key", CASES.values(), ids=CASES.keys())
def test_a_mistyped_value_is_one_error_line_naming_its_key(tmp_path, monkeypatch, text, key):
    monkeypatch.chdir(tmp_path)
    assert key in error_line(invoke(tmp_path, text))
    assert [p.name for p in tmp_path.iterdir()] == ["exp.toml"]  # no run or results folder


def test_max_runs_lowers_or_raises_the_cap(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "--max-runs 2" in error_line(invoke(tmp_path, "seed = [0, 1, 2]", "--max-runs", "2"))
    assert [p.name for p in tmp_path.iterdir()] == ["exp.toml"]
    result = invoke(tmp_path, "seed = [0, 1, 2]", "--max-runs", "3", "--print-config")
    assert result.exit_code == 0, result.output
    assert result.output.count("\n#   gaussian seed ") == 3


@pytest.mark.parametrize("key", ["seed", "combo"])
def test_an_empty_list_for_a_needed_repeatable_option_is_one_error_line(tmp_path, monkeypatch, key):
    # found by the fuzz: seed = [] once planned no run at all and crashed with an IndexError
    monkeypatch.chdir(tmp_path)
    line = error_line(invoke(tmp_path, f"{key} = []"))
    assert f"{key!r}: an empty list gives none" in line, line
    assert [p.name for p in tmp_path.iterdir()] == ["exp.toml"]
