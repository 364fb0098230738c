"""Many processes under torchrun: the process group from torchrun's environment, DDP over the
one module, the random streams, and which rank writes.

Without torchrun (no ``WORLD_SIZE`` in the environment) nothing here starts, and every helper
is the single-process identity. Under torchrun one process group serves both devices (gloo
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
import signal
import sys
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
    """Join torchrun's job if this process is part of one (once); returns this process's world."""
    global _world
    world = from_env()
    if world.launched and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=timeout())
        signal.signal(signal.SIGTERM, _stopped)
    _world = world
    return world


def _stopped(signum: int, _frame) -> None:
    """torchrun stops the other ranks when one fails: say so in one line, not a traceback.
    Every file is written by rename, so nothing is left half-written."""
    print(f"vaereg: rank {_world.rank}: stopped by torchrun (another rank failed, or the job was stopped); "
          f"run again with --resume to continue from the last checkpoint", file=sys.stderr, flush=True)
    os._exit(128 + signum)


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


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Rank 0 runs the block (fetching, caching) before the other ranks do."""
    if collective.active() and _world.rank != 0:
        dist.barrier()
    yield
    if collective.active() and _world.rank == 0:
        dist.barrier()
