"""SIGINT (Ctrl-C), SIGTERM (``kill``, ``scancel``, torchrun stopping a job) and SIGUSR2
(Slurm's advance notice before a time limit or a preemption, as submitit asks for it) end a
command with one line saying what was saved and how to resume, and exit 130, 143 and 140.

While the command line loads, nothing has been written: the process ends at once. While a
command runs, the signal raises ``Stopped`` where the process is, except inside a training
epoch, where it is held until the step in flight ends: the trainer then writes a checkpoint of
the epoch so far (``pending``), which ``--resume`` continues from exactly. Every file is
written by rename, so a stop never leaves half a file. Under torchrun or srun every rank holds
the signal, and the ranks agree after each step to stop at the same one, so rank 0's
checkpoint holds a step every rank finished."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class Stopped(BaseException):
    """A command stopped by ``signum``; ``saved`` says what was written (None: nothing yet).
    A ``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception`` swallows it."""

    def __init__(self, signum: int, saved: str | None = None):
        super().__init__(signum, saved)
        self.signum, self.saved = signum, saved

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def message(self) -> str:
        name = signal.Signals(self.signum).name
        if self.saved is None:
            return f"stopped by {name}; no checkpoint was written yet, so there is nothing to resume"
        return f"stopped by {name}; {self.saved}; run the same command with --resume to continue from it"


_held = 0  # depth of ``held`` blocks on this thread
_pending: int | None = None
_saved: str | None = None  # the latest checkpoint of the command, for a stop outside training


def console() -> None:
    """The ``vaereg`` console script: a signal while torch and the plugins load ends the process
    in one line; then the command group runs with ``handled``."""
    for signum in HANDLED:
        signal.signal(signum, _before_start)
    from vaereg_harness.cli import main

    main()


def _before_start(signum: int, _frame) -> None:
    print(f"vaereg: stopped by {signal.Signals(signum).name} while starting; nothing was written", file=sys.stderr,
          flush=True)
    os._exit(128 + signum)


def _raise(signum: int, _frame) -> None:
    global _pending
    if _held:
        _pending = _pending or signum
        return
    raise Stopped(signum, _saved)


@contextmanager
def handled() -> Iterator[None]:
    """Run a command with SIGINT, SIGTERM and SIGUSR2 raising ``Stopped`` (on the main thread; elsewhere,
    as under a test runner's thread, the signals keep their handlers)."""
    global _saved, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.getsignal(signum) for signum in HANDLED}
    _saved, _pending = None, None
    for signum in HANDLED:
        signal.signal(signum, _raise)
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


class _Held:
    """Holds the signals until ``pending`` is asked (a signal still held when the
    outermost block ends is raised there); reusable and reentrant."""

    def __enter__(self) -> None:
        global _held
        _held += 1

    def __exit__(self, *exc: object) -> None:
        global _held
        _held -= 1
        if not _held and _pending is not None and exc[0] is None:  # came after the last step's check
            raise Stopped(pending(), _saved)


#: ``with held:`` holds the signals for the block (a training epoch's steps), which asks
#: ``pending`` after each step.
held = _Held()


def pending() -> int | None:
    """The signal held since the last call (cleared), or None."""
    global _pending
    signum, _pending = _pending, None
    return signum


def saved(what: str) -> None:
    """Record the command's latest checkpoint (``what`` names it), for the line a stop prints."""
    global _saved
    _saved = what


def last_saved() -> str | None:
    """What ``saved`` recorded last in this command, or None."""
    return _saved
