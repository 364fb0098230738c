"""Each point's state, read from its files: ``done`` (its row is in the results store),
``running``, ``pending`` (submitted, or not yet), or ``failed`` (with its last line and log).
A job that died without a word (killed, out of memory) shows as failed once its process or
Slurm job is gone."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import submitit

from vaereg_harness.cluster.jobs import read_state
from vaereg_harness.cluster.sweep import Planned
from vaereg_harness.store.results import read_results, recorded

ALIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "REQUEUE_HOLD",
         "REQUEUE_FED"}


@dataclass(frozen=True)
class PointStatus:
    label: str
    state: str  # pending, running, done, failed
    detail: str
    log: str | None


def state_file(sweep_dir: Path, planned: Planned) -> Path:
    return sweep_dir / "points" / f"{planned.key}.json"


def statuses(planned: list[Planned], sweep_dir: Path) -> list[PointStatus]:
    """Every point's state, each results store read once."""
    stores = {p.results: read_results(p.results, on_skip=lambda *_: None).to_pylist() for p in planned}
    return [status(p, sweep_dir, stores[p.results]) for p in planned]


def status(planned: Planned, sweep_dir: Path, rows: list[dict] | None = None) -> PointStatus:
    """One point's state (``rows``: its results store's, if read already)."""
    label = planned.point.label
    row = recorded(planned.results, planned.key, planned.description, rows)
    if row is not None:
        return PointStatus(label, "done", f"row in {planned.results}/", None)
    state = read_state(state_file(sweep_dir, planned))
    if state is None:
        return PointStatus(label, "pending", "not submitted", None)
    log, kind = state.get("log"), state.get("state")
    if kind in ("failed", "stopped"):
        return PointStatus(label, "failed", f"exit {state.get('exit_code')}: {state.get('message', '')}", log)
    alive = job_alive(state, sweep_dir)
    if kind == "submitted":
        return PointStatus(label, "pending", f"job {state.get('job')}", log) if alive else PointStatus(
            label, "failed", f"job {state.get('job')} ended before the run started", log)
    if kind == "running":
        return PointStatus(label, "running", f"job {state.get('job')} on {state.get('host')}", log) if alive else \
            PointStatus(label, "failed", f"job {state.get('job')} ended without a row (killed?)", log)
    return PointStatus(label, "failed", f"the run ended ({kind}) but its row is not in {planned.results}/", log)


def job_alive(state: dict, sweep_dir: Path) -> bool:
    """Whether the job behind ``state`` still runs or waits: its process on this machine, or
    its Slurm job's state."""
    if state.get("executor") == "slurm" and state.get("job"):
        return submitit.SlurmJob(folder=sweep_dir / "jobs", job_id=str(state["job"])).state in ALIVE
    pid = state.get("pid")
    if not isinstance(pid, int) or state.get("host") != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
