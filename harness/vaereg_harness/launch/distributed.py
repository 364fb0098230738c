"""Many processes under torchrun or Slurm's srun: the process group from the launcher's
environment, DDP over the one module, the random streams, and which rank writes.

Without a launcher (no ``WORLD_SIZE``, and no srun step of several tasks) nothing here starts,
and every helper is the single-process identity. Under srun each task takes its rank from
Slurm's variables (``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_STEP_NUM_TASKS``) and meets the
others at the step's first node. Under torchrun one process group serves both devices (gloo
for CPU tensors, NCCL for CUDA ones), each local rank takes one GPU, and every collective
times out after ``VAEREG_COLLECTIVE_TIMEOUT`` seconds (600), so a rank that stops answering
ends the job instead of hanging it.

Random streams are keyed, not carried: the noise of training epoch e on rank r comes from
``stream_seed(seed, "train", stage, e, r)``, and the noise of evaluation pass p (or sample
chunk c) from a key without the rank. So a run resumes exactly from any epoch, on any world
size, and evaluation and sampling give the same numbers on any number of ranks."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vaereg import UsageError, collective

TIMEOUT_ENV, DEFAULT_TIMEOUT_S = "VAEREG_COLLECTIVE_TIMEOUT", 600.0


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank ``rank`` of ``size``, ``local_rank`` on its node."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    launched: bool = False  # under torchrun (a process group is started, even for one rank)

    @property
    def writer(self) -> bool:
        """Whether this rank writes checkpoints, logs, grids and rows (rank 0 alone)."""
        return self.rank == 0


_world = World()


def slurm_variables(env: dict[str, str] | os._Environ = os.environ) -> dict[str, str] | None:
    """torchrun's variables for a task of an srun step of several tasks, from Slurm's, or None
    (no such step, or torchrun's variables are already set). The rendezvous is the step's
    first node, on a port drawn from the job id (the same in every task)."""
    tasks = env.get("SLURM_STEP_NUM_TASKS", "")
    if "WORLD_SIZE" in env or not tasks.isdigit() or int(tasks) < 2 or "SLURM_PROCID" not in env:
        return None
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "")
    try:
        first = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                               check=True).stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        raise UsageError(f"srun step on {nodes!r}: 'scontrol show hostnames' could not name its first node; "
                         f"set MASTER_ADDR and launch with torchrun") from None
    port = 20000 + int(env.get("SLURM_JOB_ID", "0") or 0) % 40000
    return {"RANK": env["SLURM_PROCID"], "LOCAL_RANK": env.get("SLURM_LOCALID", "0"), "WORLD_SIZE": tasks,
            "MASTER_ADDR": env.get("MASTER_ADDR", first), "MASTER_PORT": env.get("MASTER_PORT", str(port))}


def from_env(env: dict[str, str] | os._Environ = os.environ) -> World:
    """The world torchrun describes in ``env`` (RANK, LOCAL_RANK, WORLD_SIZE), or one process."""
    if "WORLD_SIZE" not in env:
        return World()
    try:
        rank, local_rank, size = (int(env.get(name, "0")) for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    except ValueError:
        raise UsageError("RANK, LOCAL_RANK and WORLD_SIZE must be whole numbers; launch with torchrun") from None
    if not 0 <= rank < size:
        raise UsageError(f"RANK={rank} is outside WORLD_SIZE={size}; launch with torchrun")
    return World(rank, local_rank, size, launched=True)


def timeout() -> timedelta:
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1
    if not 0 < seconds < 1e7:
        raise UsageError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds; give e.g. 600")
    return timedelta(seconds=seconds)


def start() -> World:
    """Join torchrun's (or an srun step's) job if this process is part of one (once); returns
    this process's world."""
    global _world
    os.environ.update(slurm_variables() or {})
    world = from_env()
    if world.launched and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=timeout())
    _world = world
    return world


def stop() -> None:
    """Leave the job's process group, if this process joined one."""
    global _world
    if dist.is_initialized():
        dist.destroy_process_group()
    _world = World()


def current() -> World:
    return _world


def device(name: str) -> torch.device:
    """The device of ``--device name`` for this rank: its local GPU under torchrun."""
    if name == "cuda" and _world.launched:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def wrap(module: nn.Module) -> nn.Module:
    """``module`` under DDP when this process is one of several ranks, else ``module`` itself
    (DDP over one process only costs: 0.8x the steps/s on CPU). Only the parameters that
    require a gradient are synchronised: a stage freezes the rest."""
    if _world.size == 1:
        return module
    on_cuda = next(module.parameters()).device.type == "cuda"
    return DistributedDataParallel(module, device_ids=[torch.cuda.current_device()] if on_cuda else None)


def stream_seed(seed: int, *key: object) -> int:
    """A 64-bit seed for the random stream named by ``seed`` and ``key``."""
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@contextmanager
def seeded(seed: int, *key: object) -> Iterator[None]:
    """Run the block on the stream ``stream_seed(seed, *key)``; the caller's stream is left as
    it was."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(stream_seed(seed, *key))
        yield


COMMS_MARKERS = ("gloo", "NCCL", "Connection reset", "Connection closed", "timed out", "Timed out")


def lost_contact(exc: BaseException) -> bool:
    """Whether ``exc`` says another rank died or stopped answering (a collective failed)."""
    if isinstance(exc, dist.DistError):
        return True
    return _world.size > 1 and isinstance(exc, RuntimeError) and any(m in str(exc) for m in COMMS_MARKERS)


def agree(value: object) -> object:
    """Rank 0's ``value`` on every rank (for decisions every rank must take alike)."""
    if not collective.active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class StopVote:
    """The ranks agree on a held signal without stalling the steps: every ``every`` steps each
    rank sends the largest signal it holds (or 0) in an asynchronous all-reduce and reads the
    previous vote's result, which every rank reads at the same step. A vote each step cost 0.91x
    the 2-rank training throughput on 2 CPU cores; one every 8 steps costs nothing measurable,
    and a signal waits at most 16 steps. In one process a signal counts at once."""

    def __init__(self, every: int = 8) -> None:
        self.every, self.steps, self.held = every, 0, 0
        self.flag = torch.zeros(1, dtype=torch.long)
        self.work = None

    def after_step(self, signum: int | None) -> int | None:
        """The signal every rank stops on after this step, or None."""
        if not collective.active():
            return signum
        self.steps += 1
        self.held = max(self.held, signum or 0)
        if self.steps % self.every:
            return None
        agreed = self._result()
        if agreed is None:
            self.flag, self.held = torch.tensor([self.held]), 0
            self.work = dist.all_reduce(self.flag, op=dist.ReduceOp.MAX, async_op=True)
        return agreed

    def finish(self, signum: int | None = None) -> int | None:
        """After an epoch's last step: the signal any rank holds, agreed by every rank (one
        blocking all-reduce unless the vote in flight already says stop); nothing is left in
        flight."""
        if not collective.active():
            return signum
        agreed = self._result()
        if agreed is None:
            flag = torch.tensor([max(self.held, signum or 0)])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            agreed, self.held = int(flag) or None, 0
        return agreed

    def _result(self) -> int | None:
        if self.work is None:
            return None
        self.work.wait()
        self.work = None
        return int(self.flag) or None


def gathered(value: object) -> list[object]:
    """Every rank's ``value``, in rank order (one process: ``[value]``)."""
    if not collective.active():
        return [value]
    values: list[object] = [None] * _world.size
    dist.all_gather_object(values, value)
    return values


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Rank 0 runs the block (fetching, caching) before the other ranks do."""
    if collective.active() and _world.rank != 0:
        dist.barrier()
    yield
    if collective.active() and _world.rank == 0:
        dist.barrier()
