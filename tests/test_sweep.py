"""``vaereg sweep`` and ``vaereg status``: the product of every listed option, each value checked
as the command line checks it, every point planned before any runs; the local executor's
points land as rows, a failed point is reported with its log and the others still land, and a
resubmitted sweep runs nothing."""

import json
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import vaereg_cli
from vaereg_harness.cli import main
from vaereg_harness.cluster import executors
from vaereg_harness.cluster.sweep import plan_points, read
from vaereg_harness.store.results import read_results

QUICK = 'epochs = 1\nfid = false\niw_samples = 5\neval_images = 40\nbatch_size = 128\n'


def sweep_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(QUICK + textwrap.dedent(body))
    return path


def rows(results: Path) -> list[dict]:
    return read_results(results).to_pylist() if results.exists() else []


def test_every_listed_option_is_an_axis_and_the_points_are_their_product(tmp_path):
    path = sweep_file(tmp_path, """
        combo = ["gaussian", "gaussian-mlp"]
        lr = [1e-3, 3e-3]
        metrics = ["mutual-information", "active-units"]
        [set.encoder]
        latent_dim = [4, 8, 16]
        [set.objective]
        beta = 0.5
    """)
    sweep = read(path, main.commands["eval"], max_runs=100)
    assert len(sweep.points) == 2 * 2 * 3
    swept = {tuple(sorted(p.swept.items())) for p in sweep.points}
    assert len(swept) == 12
    assert {p.swept["set.encoder.latent_dim"] for p in sweep.points} == {4, 8, 16}
    point = sweep.points[-1]
    assert point.values["combos"] == ["gaussian-mlp"] and point.values["lr"] == 3e-3
    assert point.values["metrics"] == ["mutual-information", "active-units"]  # one run's list, not an axis
    args = point.args(main.commands["eval"])
    assert args[args.index("--lr") + 1] == "0.003" and "--no-fid" in args
    assert "encoder.latent_dim=16" in args and "objective.beta=0.5" in args
    with pytest.raises(Exception, match="sweeps 12 points; give --max-runs 12"):
        read(path, main.commands["eval"], max_runs=11)


def test_a_point_plans_as_vaereg_eval_would_run_it(tmp_path):
    """A point's arguments, given to vaereg eval, give the run the sweep planned: the same key
    and folder as ``vaereg eval`` with the same options by hand."""
    path = sweep_file(tmp_path, "combo = \"gaussian\"\nlr = [2e-3]\n[set.encoder]\nlatent_dim = [6]\n")
    (planned,) = plan_points(read(path, main.commands["eval"], max_runs=10).points, main)
    by_hand = vaereg_cli("eval", "--combo", "gaussian", "--epochs", "1", "--no-fid", "--iw-samples", "5",
                         "--eval-images", "40", "--batch-size", "128", "--lr", "0.002", "--set",
                         "encoder.latent_dim=6", "--print-config", cwd=tmp_path).stdout
    assert str(planned.folder) in by_hand and planned.key in str(planned.folder)
    assert json.loads(planned.description)["train"]["lr"] == 0.002


@pytest.mark.parametrize(("body", "message"), [
    ('combo = "gaussian"\nlr = ["fast"]\n', "'lr': 'fast' is not a finite number"),
    ('combo = "gaussian"\nprior_epochs = [1, 2.5]\n', "'prior_epochs': 2.5 is not a valid integer"),
    ('combo = "gaussian"\nlr = []\n', "an empty list sweeps nothing"),
    ('combo = "gaussian"\n[set.encoder]\nlatent_dim = [8, -1]\n', "sweep point set.encoder.latent_dim=-1"),
    ('combo = "gaussian"\n[set.encoder]\nlatent_dim = [[8]]\n', "flat, non-empty list"),
    ('combo = "gaussian"\nexecutor = "kubernetes"\n', "executor 'kubernetes' is not one of local, slurm"),
    ('combo = "gaussian"\nparallel = 0\n', "parallel = 0"),
    ('lr = [1e-3]\n', "no 'combo' given"),
    ('combo = "gaussian"\nflavour = [1]\n', "unknown key 'flavour'"),
    ('combo = "gaussian"\n[slurm]\ntime = "long"\n', "[slurm]: time=\"long\" is not a number"),
    ('combo = "gaussian"\nexecutor = "slurm"\n[slurm]\ntasks_per_node = 3\ngpus_per_node = 2\n',
     "one process runs per GPU"),
])
def test_a_bad_sweep_is_one_line_before_anything_runs(tmp_path, body, message):
    path = sweep_file(tmp_path, body)
    proc = vaereg_cli("sweep", "--config", str(path), cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "vaereg-results").exists() and not (tmp_path / "vaereg-runs" / "sweeps").exists()


def test_eval_keeps_reading_a_sweep_file_without_lists_and_points_to_sweep_for_lists(tmp_path):
    path = sweep_file(tmp_path, 'combo = "gaussian"\nexecutor = "slurm"\nparallel = 2\nlr = [1e-3, 2e-3]\n')
    proc = vaereg_cli("eval", "--config", str(path), "--print-config", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "to sweep a list of values, run vaereg sweep --config FILE" in proc.stderr
    path.write_text(path.read_text().replace("lr = [1e-3, 2e-3]", "lr = 2e-3"))
    assert "lr = 0.002" in vaereg_cli("eval", "--config", str(path), "--print-config", cwd=tmp_path).stdout


def test_threads_divide_the_cores_among_the_points(monkeypatch):
    monkeypatch.setattr(executors, "cores", lambda: 8)
    assert [executors.threads_per_point(n) for n in (1, 2, 3, 4, 8, 16)] == [8, 4, 2, 2, 1, 1]
    assert executors.threads_per_point(2, tasks=2) == 2


@pytest.mark.slow
def test_a_local_sweep_lands_its_rows_reports_a_failed_point_and_runs_nothing_again(tmp_path):
    """Three points, two at a time; lr 10 diverges. The other two land as rows with one thread
    each (two cores shared by two points), the failed point names its log, and resubmitting
    runs nothing and writes nothing."""
    path = sweep_file(tmp_path, 'combo = "gaussian"\nlr = [1e-3, 10.0, 2e-3]\nparallel = 2\n')
    first = vaereg_cli("sweep", "--config", str(path), cwd=tmp_path, check=False)
    assert first.returncode == 1, first.stderr
    assert "Error: 1 of 3 point(s) failed" in first.stderr
    landed = rows(tmp_path / "vaereg-results")
    assert sorted(json.loads(r["config"])["train"]["lr"] for r in landed) == [1e-3, 2e-3]
    assert all(json.loads(r["config"])["train"]["threads"] == executors.threads_per_point(2) for r in landed)
    failed = next(line for line in first.stdout.splitlines() if line.startswith("lr=10.0"))
    assert "failed" in failed and "loss became nan" in failed
    log = Path(failed.split()[-1])
    assert log.is_file() and "loss became nan" in log.read_text()
    files = sorted(p.name for p in (tmp_path / "vaereg-results").glob("*.parquet"))

    status = vaereg_cli("status", "--config", str(path), cwd=tmp_path)
    states = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[1:]}
    assert states == {"lr=0.001": "done", "lr=10.0": "failed", "lr=0.002": "done"}
    assert "2 done, 0 running, 0 pending, 1 failed" in status.stderr

    path.write_text(path.read_text().replace("10.0, ", ""))  # the failing point dropped: nothing is left to run
    again = vaereg_cli("sweep", "--config", str(path), cwd=tmp_path)
    assert "2 already recorded, 0 to run" in again.stderr
    assert sorted(p.name for p in (tmp_path / "vaereg-results").glob("*.parquet")) == files
    assert all(pq.read_table(tmp_path / "vaereg-results" / name).num_rows == 1 for name in files)
