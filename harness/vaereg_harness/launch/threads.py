"""CPU threads: how many intra-op threads this process uses.

Measured on 2 cores (``benchmarks/RESULTS.md``): two threads train 1.4-1.5x faster than one on
an idle machine, but beside one other busy process they run 2.5-3x slower than one thread,
because every parallel region waits for the thread whose core is taken. So by default
(``auto``) a process starts with its share of the cores (the cores it may run on, divided by
torchrun's local ranks) and, on Linux, looks at the load about once a second: the cores that
other processes kept busy since the last look are taken off its share. ``--threads N`` fixes
the count instead.

Reproducibility: a fixed count gives bitwise-equal weights and scores from the same seed, under
any load. Counts differ in how a matmul splits its sums, so 1 and 2 threads differ in the last
bits: 9e-8 in the weights and 6e-7 nats in the NLL after 5 epochs of ``gaussian`` on digits.
``auto`` may change the count mid-run, so it repeats to that precision, not bit for bit."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

FIRST_LOOK_S, LOOK_EVERY_S = 0.05, 1.0
STAT = Path("/proc/stat")


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def share() -> int:
    """This process's share of the cores: all of them, or an equal part under torchrun."""
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    return max(1, cores() // max(1, local_ranks))


def busy_seconds() -> float | None:
    """CPU seconds every process on the machine has spent since boot (``/proc/stat``)."""
    try:
        fields = STAT.read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Threads:
    """The thread setting of this process: fixed, or adapted to the load (``tick``)."""

    def __init__(self, fixed: int | None = None):
        self.fixed, self.share = fixed, share()
        self.count = fixed or self.share
        self.used = {self.count}
        torch.set_num_threads(self.count)
        self._look = None if fixed or self.share == 1 else self._sample()
        self._due = time.perf_counter() + FIRST_LOOK_S

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        busy = busy_seconds()
        return None if busy is None else (time.perf_counter(), time.process_time(), busy)

    def tick(self) -> None:
        """Called between steps; costs one clock read unless a look is due."""
        if self._look is None or time.perf_counter() < self._due:
            return
        now = self._sample()
        wall, own, busy = (a - b for a, b in zip(now, self._look, strict=True))
        others = max(0.0, (busy - own) / wall)  # cores other processes kept busy since the last look
        count = max(1, min(self.share, round(cores() - others)))
        if count != self.count:
            torch.set_num_threads(count)
            self.count = count
            self.used.add(count)
        self._look, self._due = now, now[0] + LOOK_EVERY_S

    def describe(self) -> str:
        """What the row records: ``"2"`` when fixed, ``"auto:1-2"`` (the counts used) otherwise."""
        return str(self.fixed) if self.fixed else f"auto:{min(self.used)}-{max(self.used)}"


_current: Threads | None = None


def configure(fixed: int | None) -> Threads:
    """Apply a thread setting to this process (``None``: auto) and return it. The same setting
    again keeps what it has seen of the load and starts a new record of the counts used."""
    global _current
    if _current is not None and _current.fixed == fixed:
        _current.used = {_current.count}
    else:
        _current = Threads(fixed)
    return _current


def tick() -> None:
    """Let the current setting look at the load, if a look is due."""
    if _current is not None:
        _current.tick()


def current() -> Threads | None:
    """The setting this process runs with (None before ``configure``)."""
    return _current
