"""Where a sweep's points run: ``local`` (submitit's local executor, ``parallel`` points at a
time, the cores divided among them) or ``slurm`` (one array task per point, submitted through
submitit with the experiment file's typed ``[slurm]`` table)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import submitit

from vaereg import Range, UsageError
from vaereg.config import from_dict
from vaereg_harness.launch.threads import cores

LOCAL_TIMEOUT_MIN = 60 * 24 * 365  # submitit's local jobs time out (default 2 minutes); a point runs until done


@dataclass
class SlurmOptions:
    """The ``[slurm]`` table: what each array task asks for. ``time``: minutes. On GPU nodes one
    task (one process) runs per GPU: ``tasks_per_node`` defaults to ``gpus_per_node``; on CPU
    nodes it replaces them (``tasks_per_node = 2``: a 2-process DDP run per node). ``sbatch``:
    further ``#SBATCH`` lines, as ``"--name=value"`` strings. ``signal_delay_s``: Slurm's advance
    notice (SIGUSR2) before the time limit, on which the run checkpoints and is requeued."""

    partition: str | None = None
    time: Annotated[int, Range(1, 525_600)] = 60
    nodes: Annotated[int, Range(1, 100_000)] = 1
    tasks_per_node: Annotated[int, Range(1, 1024)] | None = None
    cpus_per_task: Annotated[int, Range(1, 1024)] = 1
    gpus_per_node: Annotated[int, Range(0, 64)] = 0
    mem_gb: Annotated[float, Range(0, 1e7, open_low=True)] | None = None
    array_parallelism: Annotated[int, Range(1, 1_000_000)] = 256
    signal_delay_s: Annotated[int, Range(0, 86_400)] = 90
    account: str | None = None
    qos: str | None = None

    def __post_init__(self) -> None:
        if self.tasks_per_node is None:
            self.tasks_per_node = max(self.gpus_per_node, 1)
        elif self.gpus_per_node and self.tasks_per_node != self.gpus_per_node:
            raise ValueError(f"tasks_per_node={self.tasks_per_node} with gpus_per_node={self.gpus_per_node}: one "
                             f"process runs per GPU; leave tasks_per_node out")


def slurm_options(table: dict[str, Any], where: str) -> tuple[SlurmOptions, dict[str, str | bool]]:
    """The typed ``[slurm]`` table and its ``sbatch`` lines (name -> value, True for a flag)."""
    given = dict(table)
    lines = given.pop("sbatch", [])
    if not isinstance(lines, list) or not all(isinstance(line, str) and line.startswith("--") for line in lines):
        raise UsageError(f"{where} [slurm] sbatch: give a list of '--name=value' strings, e.g. "
                         f"[\"--constraint=volta\"]")
    extra: dict[str, str | bool] = {}
    for line in lines:
        name, sep, value = line[2:].partition("=")
        extra[name.replace("-", "_")] = value if sep else True
    return from_dict(SlurmOptions, given, what=f"{where} [slurm]"), extra


def slurm_executor(folder: Path, options: SlurmOptions, extra: dict[str, str | bool]) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
    given = {"partition": options.partition, "account": options.account, "qos": options.qos,
             "mem": None if options.mem_gb is None else f"{options.mem_gb:g}GB",
             "gpus_per_node": options.gpus_per_node or None}
    executor.update_parameters(time=options.time, nodes=options.nodes, ntasks_per_node=options.tasks_per_node,
                               cpus_per_task=options.cpus_per_task, array_parallelism=options.array_parallelism,
                               signal_delay_s=options.signal_delay_s, job_name="vaereg",
                               additional_parameters=extra,
                               **{name: value for name, value in given.items() if value is not None})
    return executor


def local_executor(folder: Path, tasks: int = 1) -> submitit.LocalExecutor:
    executor = submitit.LocalExecutor(folder=folder, max_num_timeout=3)
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, tasks_per_node=tasks)
    return executor


def threads_per_point(parallel: int, tasks: int = 1) -> int:
    """Intra-op threads for each process when ``parallel`` points of ``tasks`` processes share
    this machine's cores: never more processes x threads than cores (at least one thread)."""
    return max(1, cores() // (parallel * tasks))


def run_local(executor: submitit.LocalExecutor, jobs: Iterable[Callable[[], Any]], parallel: int,
              poll_s: float = 0.2) -> Iterator[int]:
    """Run ``jobs`` on this machine, ``parallel`` at a time, taking each from ``jobs`` only when
    a slot is free (a search asks for its next trial then); yields each one's index as it ends
    (its state file says how).
    Stopping the generator (a signal) cancels the jobs still running: each checkpoints first."""
    pending = enumerate(jobs)
    running: dict[int, submitit.Job] = {}
    more = True
    try:
        while more or running:
            while more and len(running) < parallel:
                index, job = next(pending, (None, None))
                if job is None:
                    more = False
                    break
                running[index] = executor.submit(job)
            ended = [index for index, job in running.items() if job.done()]
            for index in ended:
                del running[index]  # freed now, not at the interpreter's exit (submitit's __del__ needs it alive)
                yield index
            if not ended:
                time.sleep(poll_s)
    finally:
        for job in running.values():
            job.cancel(check=False)
