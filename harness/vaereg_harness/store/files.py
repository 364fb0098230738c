"""Atomic file writes: the one place a file is written under a temporary name and renamed, so a
crash or a concurrent reader never sees half a file."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from vaereg import UsageError, VaeregError


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` for a temporary file next to ``path``, then rename it to ``path``.
    On failure the temporary file is removed and ``path`` is left as it was; a write error
    (a full disk, a read-only folder) is one error naming the path. Temporary files that killed
    processes left in the folder are removed first."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent)
    except OSError as exc:
        raise VaeregError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise VaeregError(f"cannot write {path}: {exc.strerror or exc}; nothing there was changed") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_stale_temps(folder: Path) -> None:
    """Remove ``atomic_write``'s temporary files whose writing process no longer runs."""
    for tmp in folder.glob(".*.tmp"):
        parts = tmp.name.rsplit(".", 3)  # .<name>.<pid>.<hex>.tmp
        if len(parts) == 4 and parts[1].isdigit() and not alive(int(parts[1])):
            tmp.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or a pid we cannot judge: kept
        pass
    return True


def check_path_name(text: str, what: str) -> None:
    """Refuse a path whose name is too long for the file system, before any file call fails on it."""
    if len(text.encode()) >= 4096 or any(len(part.encode()) > 255 for part in Path(text).parts):
        raise UsageError(f"{what} {text[:40]}...: the name is too long for a path (255 bytes a part, 4096 in all)")


def check_folder(path: Path, option: str) -> None:
    """Refuse, before any work, a folder option that names a file or a place that cannot be
    written."""
    check_path_name(str(path), option)
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a folder; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {existing} cannot be written; give a folder you can write to")


def make_folder(path: Path, option: str) -> None:
    """Make a checked folder option's folder and write a probe file in it, or refuse it in one line."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".vaereg-probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write there ({exc.strerror}); give a folder you can write to"
                         ) from None
