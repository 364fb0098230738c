"""Run-folder locks: one process at a time trains into a run folder, so two identical runs
started together give one training and one row.

The lock is an OS lock (``fcntl.flock`` through the ``filelock`` package) on ``.lock`` in the
folder: the kernel releases it when its holder exits, killed or not, so a lock never outlives
its process and needs no cleaning up. Under torchrun rank 0 holds it for the whole job; the
other ranks wait on rank 0 at the job's next collective.

On a network file system (NFS, Lustre, GPFS) ``flock`` holds across machines only where the
file system supports it (NFSv4, Lustre mounted with ``flock``); where it does not, two machines
can both take the lock. A sweep whose points run on several machines relies on each point's
run key naming its own folder, not on the lock."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from vaereg import VaeregError
from vaereg_harness.launch import distributed

LOCK_NAME = ".lock"


@contextmanager
def locked(folder: Path, what: str, *, quiet: bool = False) -> Iterator[None]:
    """Hold ``folder``'s lock (made with the folder) for the block, waiting for another process
    that holds it and saying so once on stderr, unless ``quiet``. Only the writer rank locks."""
    if not distributed.current().writer:
        yield
        return
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if not quiet:
                print(f"note: another vaereg process is running {what} in {folder}; waiting for it to finish "
                      f"(lock {path})", file=sys.stderr, flush=True)
            lock.acquire()
    except OSError as exc:
        raise VaeregError(f"cannot lock {path}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        lock.release()
