"""Sweeps, DDP training and searches on a real Slurm cluster (``scripts/slurm-up.sh`` starts a
one-node one here; CI starts it and sets VAEREG_REQUIRE_SLURM=1, so these never skip there).
Jobs run the CPU tasks of this 2-core machine."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import vaereg_cli
from tests.test_distributed import torchrun
from tests.test_search import SIX_TRIALS
from vaereg_harness.store.results import read_results
from vaereg_harness.store.studies import studies_file

pytestmark = pytest.mark.slurm

QUICK = 'fid = false\niw_samples = 8\nexecutor = "slurm"\n'
LONG = ["--combo", "gaussian-mlp", "--epochs", "40", "--no-fid", "--iw-samples", "8", "--batch-size", "16",
        "--threads", "1", "--quiet"]


def not_up() -> str | None:
    """Why no Slurm cluster answers here, or None."""
    if shutil.which("sinfo") is None:
        return "no Slurm here (sinfo is not on PATH); start one with scripts/slurm-up.sh"
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0 or "idle" not in proc.stdout and "mix" not in proc.stdout:
        return f"no idle Slurm node answers (sinfo: {(proc.stderr or proc.stdout).strip()[:200]})"
    return None


@pytest.fixture(scope="module", autouse=True)
def _cluster():
    why = not_up()
    if why and os.environ.get("VAEREG_REQUIRE_SLURM"):
        pytest.fail(f"VAEREG_REQUIRE_SLURM is set, but {why}")
    if why:
        pytest.skip(why)


def experiment(tmp_path: Path, body: str, slurm: str = "") -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(QUICK + textwrap.dedent(body) + "\n[slurm]\ntime = 10\n" + textwrap.dedent(slurm))
    return path


def rows(results: Path) -> list[dict]:
    return read_results(results).to_pylist() if results.exists() else []


def metrics(row: dict) -> tuple:
    return row["nll_nats"], row["nelbo_nats"], row["nll_bpd"], row["config_hash"]


def test_a_sweep_is_a_job_array_whose_failed_point_names_its_log_and_a_resubmit_runs_nothing(tmp_path):
    path = experiment(tmp_path, 'combo = "gaussian"\nepochs = 1\neval_images = 40\nlr = [1e-3, 10.0, 2e-3]\n')
    first = vaereg_cli("sweep", "--config", str(path), "--wait", cwd=tmp_path, check=False)
    assert first.returncode == 1, first.stderr
    assert "submitted 3 point(s) as Slurm job array" in first.stderr
    landed = rows(tmp_path / "vaereg-results")
    assert sorted(json.loads(r["config"])["train"]["lr"] for r in landed) == [1e-3, 2e-3]
    failed = next(line for line in first.stdout.splitlines() if line.startswith("lr=10.0"))
    assert " failed " in failed and "loss became nan" in failed
    assert "loss became nan" in Path(failed.split()[-1]).read_text()  # the array task's own log
    status = vaereg_cli("status", "--config", str(path), cwd=tmp_path)
    assert "2 done, 0 running, 0 pending, 1 failed" in status.stderr
    path.write_text(path.read_text().replace("10.0, ", ""))
    again = vaereg_cli("sweep", "--config", str(path), "--wait", cwd=tmp_path)
    assert "2 already recorded, 0 to run" in again.stderr and "submitted" not in again.stderr
    assert len(rows(tmp_path / "vaereg-results")) == 2


def test_two_tasks_through_srun_give_the_row_of_two_torchrun_ranks(tmp_path):
    """One point asking for 2 tasks per node runs one DDP job over the two srun tasks (rank 0
    writes the row); so does a user's own ``srun -n 2 vaereg eval``; both equal torchrun's."""
    args = ["--combo", "gaussian-mlp", "--epochs", "3", "--no-fid", "--iw-samples", "8", "--batch-size", "32",
            "--set", "encoder.width=16", "--quiet"]
    path = experiment(tmp_path, 'combo = "gaussian-mlp"\nepochs = 3\nbatch_size = 32\n[set.encoder]\nwidth = 16\n',
                      "tasks_per_node = 2\n")
    vaereg_cli("sweep", "--config", str(path), "--wait", cwd=tmp_path)
    torchrun("eval", *args, "--out", "torchrun", "--results", "torchrun-rows", cwd=tmp_path)
    subprocess.run(["srun", "-n", "2", "-c", "1", sys.executable, "-m", "vaereg_harness.cli", "eval", *args,
                    "--out", "srun", "--results", "srun-rows"], cwd=tmp_path, check=True, capture_output=True)
    (array,), (reference,), (srun,) = (rows(tmp_path / name) for name in ("vaereg-results", "torchrun-rows",
                                                                          "srun-rows"))
    assert reference["world_size"] == array["world_size"] == srun["world_size"] == 2
    assert metrics(array) == metrics(reference) == metrics(srun)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The row of the long run below, never stopped, in one process here."""
    where = tmp_path_factory.mktemp("uninterrupted")
    vaereg_cli("eval", *LONG, "--out", "runs", "--results", "rows", cwd=where)
    (row,) = rows(where / "rows")
    return row


def long_point(tmp_path: Path) -> Path:
    return experiment(tmp_path, 'combo = "gaussian-mlp"\nepochs = 40\nbatch_size = 16\nthreads = 1\n'
                                'checkpoint_every = 0\n')


def running_job(tmp_path: Path, path: Path) -> str:
    """Submit the point and return its job id once it has written a checkpoint."""
    proc = vaereg_cli("sweep", "--config", str(path), cwd=tmp_path)
    job = proc.stderr.split("Slurm job array ")[1].split()[0].rstrip(";")
    deadline = time.monotonic() + 120
    while not list((tmp_path / "vaereg-runs").glob("*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    return job


def wait_gone(job: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["squeue", "-h", "-t", "all", "-j", job, "-o", "%T"], capture_output=True,
                               text=True).stdout.split()
        if state and all(s in ("COMPLETED", "CANCELLED", "FAILED") for s in state):
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job} still runs after {timeout} s")


def test_scancel_then_resubmit_resumes_from_the_checkpoint_and_gives_the_uninterrupted_row(tmp_path, uninterrupted):
    path = long_point(tmp_path)
    job = running_job(tmp_path, path)
    subprocess.run(["scancel", job], check=True)
    wait_gone(job)
    status = vaereg_cli("status", "--config", str(path), cwd=tmp_path).stdout
    assert "failed" in status and "stopped by SIGTERM; the checkpoint" in status
    assert rows(tmp_path / "vaereg-results") == []
    vaereg_cli("sweep", "--config", str(path), "--wait", cwd=tmp_path)
    (row,) = rows(tmp_path / "vaereg-results")
    assert metrics(row) == metrics(uninterrupted)
    (log,) = (tmp_path / "vaereg-runs").glob("*/metrics.jsonl")
    epochs = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
    assert epochs == list(range(1, 41))  # resumed, not restarted: every epoch once


def test_slurms_advance_notice_checkpoints_then_submitit_requeues_and_the_run_resumes(tmp_path, uninterrupted):
    """SIGUSR2 (what Slurm sends ``signal_delay_s`` before the time limit, or on preemption):
    the step in flight ends, the run checkpoints, then submitit's handler requeues the job,
    which resumes from the checkpoint to the uninterrupted row."""
    path = long_point(tmp_path)
    job = running_job(tmp_path, path)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    time.sleep(2)
    wait_gone(job, timeout=180)
    (row,) = rows(tmp_path / "vaereg-results")
    assert metrics(row) == metrics(uninterrupted)
    logs = "".join(p.read_text() for p in (tmp_path / "vaereg-runs" / "sweeps").rglob("*_log.*"))
    assert "stopped by SIGUSR2; the checkpoint" in logs and "Requeued job" in logs


def test_a_search_on_slurm_runs_its_trials_as_an_array_and_optuna_loads_the_study(tmp_path):
    path = experiment(tmp_path, 'combo = "gaussian"\neval_images = 40\nbatch_size = 128\n' + SIX_TRIALS)
    proc = vaereg_cli("search", "--config", str(path), "--wait", cwd=tmp_path)
    assert "submitted 6 trial(s) as a Slurm job array" in proc.stderr
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{studies_file(tmp_path / 'vaereg-results')}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6
    by_key = {r["config_hash"]: r for r in rows(tmp_path / "vaereg-results")}
    assert len(by_key) == 6 and all(by_key[t.user_attrs["run_key"]]["nll_nats"] == t.value for t in study.trials)
