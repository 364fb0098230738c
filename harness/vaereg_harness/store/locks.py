"""File locks: one process at a time trains into a run folder (so two identical runs started
together give one training and one row), and one process at a time fills an entry of the shared
FID cache (so concurrent runs never train the classifier twice or read half a file).

A lock is an OS lock (``fcntl.flock`` through the ``filelock`` package) on a small file beside
what it guards: the kernel releases it when its holder exits, killed or not, so a lock never
outlives its process and needs no cleaning up. Under torchrun rank 0 holds a run folder's lock
for the whole job; the other ranks wait on rank 0 at the job's next collective.

On a network file system (NFS, Lustre, GPFS) ``flock`` holds across machines only where the
file system supports it (NFSv4, Lustre mounted with ``flock``); where it does not, two machines
can both take the lock. A sweep whose points run on several machines relies on each point's
run key naming its own folder, not on the lock; the FID cache's files are still written by
rename, so a reader never sees half of one, at worst two machines compute the same entry."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from vaereg import VaeregError
from vaereg_harness.launch import distributed

RUN_LOCK = ".lock"


@contextmanager
def file_lock(path: Path, what: str, *, quiet: bool = False) -> Iterator[None]:
    """Hold the lock file ``path`` (made with its folder) for the block, waiting for another
    process that holds it and saying once on stderr that it waits for ``what``, unless ``quiet``.
    Reentrant: a block inside another on the same path in this process goes straight in."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path, is_singleton=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if not quiet:
                print(f"note: another vaereg process is {what}; waiting for it to finish (lock {path})",
                      file=sys.stderr, flush=True)
            lock.acquire()
    except OSError as exc:
        raise VaeregError(f"cannot lock {path}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def run_folder_lock(folder: Path, run: str, *, quiet: bool = False) -> Iterator[None]:
    """Hold the run ``folder``'s lock for the block (``run`` names it in the waiting note). Only
    the writer rank locks."""
    if not distributed.current().writer:
        yield
        return
    with file_lock(folder / RUN_LOCK, f"running {run} in {folder}", quiet=quiet):
        yield
