"""``vaereg search``: an Optuna study over typed ranges, trials run as sweep points through the
local executor, scored by a row's metric in its declared direction, pruned on the per-epoch
validation ELBO; the study is one Optuna can load itself."""

import json
import textwrap
from pathlib import Path

import optuna
import pytest

from tests.conftest import vaereg_cli
from vaereg_harness.cluster import trials
from vaereg_harness.cluster.trials import TrialPruned, TrialReporter
from vaereg_harness.store.results import read_results
from vaereg_harness.store.studies import studies_file

QUICK = 'combo = "gaussian"\nfid = false\niw_samples = 5\neval_images = 40\nbatch_size = 128\n'


def search_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "search.toml"
    path.write_text(QUICK + textwrap.dedent(body))
    return path


def load(tmp_path: Path, name: str = "search") -> optuna.Study:
    storage = f"sqlite:///{studies_file(tmp_path / 'vaereg-results')}"
    return optuna.load_study(study_name=name, storage=storage)


#: The issue's search: 6 trials over lr and latent size on digits (test_slurm runs it on Slurm).
SIX_TRIALS = """
epochs = 2
[search]
trials = 6
pruner = "none"
[search.space]
lr = { low = 1e-4, high = 1e-2, log = true }
"set.encoder.latent_dim" = { choices = [2, 4, 8] }
"""


@pytest.mark.slow
def test_six_trials_over_lr_and_latent_size_write_six_rows_and_a_study_optuna_loads(tmp_path):
    path = search_file(tmp_path, SIX_TRIALS)
    proc = vaereg_cli("search", "--config", str(path), "--parallel", "2", cwd=tmp_path)
    study = load(tmp_path)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE  # nll_nats: lower is better
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6
    rows = {r["config_hash"]: r for r in read_results(tmp_path / "vaereg-results").to_pylist()}
    assert len(rows) == 6
    for t in study.trials:  # each trial's value is its own row's NLL, and its row ran its parameters
        row = rows[t.user_attrs["run_key"]]
        assert t.value == row["nll_nats"]
        config = json.loads(row["config"])
        assert config["train"]["lr"] == t.params["lr"]
        assert config["parts"]["encoder"]["latent_dim"] == t.params["set.encoder.latent_dim"]
        assert 1e-4 <= t.params["lr"] <= 1e-2
    best = min(study.trials, key=lambda t: t.value)
    assert study.best_trial.number == best.number
    assert f"* best: trial {best.number}" in proc.stdout
    again = vaereg_cli("search", "--config", str(path), cwd=tmp_path)
    assert "6 trial(s) finished, 0 to run" in again.stderr and len(load(tmp_path).trials) == 6
    status = vaereg_cli("status", "--config", str(path), cwd=tmp_path).stdout
    assert f"* best: trial {best.number}" in status and status.count(" complete ") == 6
    dry = vaereg_cli("search", "--config", str(path), "--dry-run", cwd=tmp_path)
    assert "minimize nll_nats over lr, set.encoder.latent_dim" in dry.stderr and len(load(tmp_path).trials) == 6


def test_a_trial_worse_than_the_median_at_an_epoch_is_pruned_and_writes_no_row(tmp_path):
    """Pruning on the validation ELBO: lr 1e-5 learns far slower than the two trials before it,
    so the median pruner stops it after its first epoch; it is marked pruned, writes no row,
    and its point's state says so."""
    path = search_file(tmp_path, """
        epochs = 4
        validation_images = 200
        [search]
        trials = 3
        startup_trials = 2
        warmup_epochs = 0
        [search.space]
        lr = { choices = [3e-3, 1e-5] }
    """)
    study = optuna.create_study(study_name="search", direction="minimize",
                                storage=f"sqlite:///{studies_file(tmp_path / 'vaereg-results')}")
    for lr in (3e-3, 3e-3, 1e-5):
        study.enqueue_trial({"lr": lr}, skip_if_exists=False)
    vaereg_cli("search", "--config", str(path), cwd=tmp_path)
    study = load(tmp_path)
    states = [t.state for t in study.trials]
    assert states[:2] == [optuna.trial.TrialState.COMPLETE] * 2, states
    assert states[2] == optuna.trial.TrialState.PRUNED and study.trials[2].params == {"lr": 1e-5}
    pruned = study.trials[2]
    assert list(pruned.intermediate_values) == [1]  # stopped after its first epoch
    assert pruned.intermediate_values[1] > study.trials[0].intermediate_values[1]
    rows = read_results(tmp_path / "vaereg-results").to_pylist()
    assert {r["config_hash"] for r in rows} == {study.trials[0].user_attrs["run_key"]}  # one run, twice asked
    state = json.loads((tmp_path / "vaereg-runs" / "sweeps" / "search" / "points"
                        / f"{pruned.user_attrs['run_key']}.json").read_text())
    assert state["state"] == "pruned"


def test_the_reporter_reports_each_epoch_and_prunes_where_the_median_pruner_says(tmp_path, monkeypatch):
    """The tracker against Optuna's own MedianPruner: two finished trials with values 1 and 3 at
    epoch 1 (median 2); a third reporting 2.5 is pruned, one reporting 1.5 is not."""
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name="s", storage=storage,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    for value in (1.0, 3.0):
        trial = study.ask()
        trial.report(value, 1)
        study.tell(trial, value)
    for value, pruned in ((1.5, False), (2.5, True)):
        trial = study.ask()
        monkeypatch.setattr(trials, "current", trials.TrialRef(storage, "s", trial._trial_id, trial.number,
                                                                 ("median", 2, 0)))
        reporter = TrialReporter(tmp_path, {})
        reporter.log({"stage": "autoencoder", "epoch": 1, "loss": 9.0}, lambda: None)  # no validation: nothing
        assert study.trials[trial.number].intermediate_values == {}
        if pruned:
            with pytest.raises(TrialPruned, match="pruned after epoch 1"):
                reporter.log({"stage": "autoencoder", "epoch": 1, "validation_elbo": value}, lambda: None)
            assert study.trials[trial.number].state == optuna.trial.TrialState.PRUNED
        else:
            reporter.log({"stage": "autoencoder", "epoch": 1, "validation_elbo": value}, lambda: None)
            assert study.trials[trial.number].intermediate_values == {1: value}
            assert study.trials[trial.number].state == optuna.trial.TrialState.RUNNING


def test_the_optuna_tracker_outside_a_search_is_one_line(tmp_path):
    proc = vaereg_cli("train", "--combo", "gaussian", "--epochs", "1", "--log", "optuna", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "runs only inside one" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("body", "message"), [
    ('[search]\ntrials = 2\n', "give the ranges to search in [search.space]"),
    ('[search]\n[search.space]\nlr = { low = 1e-2, high = 1e-4 }\n', "give low <= high"),
    ('[search]\n[search.space]\nlr = { low = 0.0, high = 1e-2, log = true }\n', "both > 0 with log = true"),
    ('[search]\npruner = "none"\n[search.space]\nlr = { low = 1e-4, high = 20.0 }\n', "sweep point lr=20.0"),
    ('[search]\npruner = "none"\n[search.space]\n"set.encoder.latent_dim" = { low = 0, high = 8 }\n',
     "sweep point set.encoder.latent_dim=0"),
    ('[search]\n[search.space]\nlr = { choices = [] }\n', "choices should be a non-empty list"),
    ('[search]\n[search.space]\nlr = { lo = 1 }\n', "unknown key 'lo'"),
    ('[search]\nmetric = "rate"\n[search.space]\nlr = { low = 1e-4, high = 1e-2 }\n',
     "is not a score with a direction"),
    ('[search]\n[search.space]\nlr = { low = 1e-4, high = 1e-2 }\n', "pruning needs a validation split"),
    ('lr = [1e-3, 2e-3]\n[search]\n[search.space]\nepochs = { low = 1, high = 2 }\n', "put the ranges to search"),
    ('validation_images = 100\nexecutor = "slurm"\n[slurm]\ntasks_per_node = 2\n[search]\n[search.space]\n'
     'lr = { low = 1e-4, high = 1e-2 }\n', "a trial of several processes cannot be pruned"),
])
def test_a_bad_search_is_one_line_before_any_trial(tmp_path, body, message):
    proc = vaereg_cli("search", "--config", str(search_file(tmp_path, "epochs = 1\n" + body)), cwd=tmp_path,
                      check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not studies_file(tmp_path / "vaereg-results").exists()
