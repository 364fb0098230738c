"""What a sweep's job runs: one point, as ``vaereg eval ARGS --resume --quiet`` in the job's own
process, and the point's state file beside the sweep.

A job with several tasks (Slurm's ``srun``, or the local executor's tasks) is one DDP run:
submitit's job environment gives each task its rank, exported as torchrun would, so the run
takes the same path as under torchrun and rank 0 writes the row. Every point resumes from its
checkpoint if it has one, so a resubmitted or requeued point continues rather than restarts;
a finished point finds its row and does nothing.

A point's state (``points/<run key>.json`` in the sweep's folder) is written by rename: by the
submitting command (``submitted``), then by the job's rank 0 (``running``, then ``done``,
``failed`` or ``stopped`` with the exit code and the last line it printed)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import submitit

from vaereg import VaeregError
from vaereg_harness.store.files import atomic_write

STOPPED_BY = {128 + signal.SIGTERM: "SIGTERM", 128 + signal.SIGINT: "SIGINT", 128 + signal.SIGUSR2: "SIGUSR2"}


def write_state(path: Path, **fields: Any) -> None:
    """Merge ``fields`` into the state file ``path``."""
    state = {**(read_state(path) or {}), **fields}
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(state, indent=1), encoding="utf-8"))


def read_state(path: Path) -> dict[str, Any] | None:
    """A point's state, or None when there is none (or it cannot be read)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


class LastLine(io.TextIOBase):
    """Passes text through to ``stream`` and keeps its last non-empty line (a point's error)."""

    def __init__(self, stream: Any):
        self.stream, self.last = stream, ""

    def write(self, text: str) -> int:
        lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
        if lines:
            self.last = lines[-1].strip()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def run_eval(args: list[str], stderr: LastLine) -> int:
    """``vaereg eval ARGS`` in this process; its exit code."""
    from vaereg_harness.cli import main

    try:
        with contextlib.redirect_stderr(stderr):
            main.main(["eval", *args], prog_name="vaereg", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


class PointJob(submitit.helpers.Checkpointable):
    """A sweep point as a submitit job: ``args`` for ``vaereg eval`` (resumed, quiet), its state
    file ``state``. Checkpointable: on Slurm's advance notice (SIGUSR2, ``signal_delay_s``
    before the time limit, or a preemption), the run first checkpoints the step in flight, then
    submitit requeues the same job, which resumes from that checkpoint."""

    def __init__(self, args: list[str], state: Path):
        self.args, self.state = [*args, "--resume", "--quiet"], state

    def __call__(self) -> int:
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # one DDP run over the job's tasks, started as torchrun would start it
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        writer = env.global_rank == 0
        log = str(env.paths.stderr)
        if writer:
            write_state(self.state, state="running", job=env.job_id, host=socket.gethostname(), pid=os.getpid(),
                        log=log, started=time.time())
        stderr = LastLine(sys.stderr)
        code = run_eval(self.args, stderr)
        outcome = self.outcome(code, stderr.last) if writer else "done" if code == 0 else "failed"
        if writer:
            write_state(self.state, state=outcome, exit_code=code, message=stderr.last, ended=time.time())
        if code == 128 + signal.SIGUSR2 and callable(signal.getsignal(signal.SIGUSR2)):
            signal.raise_signal(signal.SIGUSR2)  # the run has saved: submitit's handler now requeues the job
        if outcome in ("failed", "stopped"):
            raise PointFailed(f"vaereg eval exited with {code}: {stderr.last}")
        return code

    def outcome(self, code: int, message: str) -> str:
        """How the run ended (rank 0): done, stopped (by a signal; it resumes) or failed."""
        return "done" if code == 0 else "stopped" if code in STOPPED_BY else "failed"


class PointFailed(VaeregError):
    """A point's run ended with an error (its state file and log say which)."""
