"""Checkpoints: state dicts, tensors and JSON text only, written atomically and loaded with
``weights_only=True``, so loading a checkpoint never runs code."""

from __future__ import annotations

import errno
import json
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vaereg import DataSpec, UsageError, __version__
from vaereg.combo import Combo, resolve
from vaereg.model import VAE
from vaereg_harness.store.files import atomic_write

FORMAT = 2


def save(path: Path, model: VAE, *, state: dict[str, Any]) -> None:
    """Write ``path`` via a temporary file and a rename: a crash leaves the old file intact."""
    combo = model.combo
    payload = {
        "format": FORMAT,
        "vaereg_version": __version__,
        "combo": combo.text,
        "canonical": combo.canonical,
        "data": asdict(combo.data),
        "options": json.dumps(combo.options()),
        "model": model.state_dict(),
        **state,
    }
    atomic_write(path, lambda tmp: write(payload, tmp))


def write(payload: dict[str, Any], tmp: Path) -> None:
    """``torch.save``, whose writer reports a failed write (a full disk) as a ``RuntimeError``:
    raised as the ``OSError`` that ``atomic_write`` turns into one line naming the checkpoint."""
    try:
        torch.save(payload, tmp)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise OSError(errno.EIO, f"{first} (is the disk full?)") from exc


# what a checkpoint must hold, and the type of each
REQUIRED = {"format": int, "combo": str, "canonical": str, "data": dict, "options": str, "model": dict}


def load(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, checked; every malformed file is one usage error."""
    if not Path(path).is_file():
        raise UsageError(f"no checkpoint at {path}; give the checkpoint.pt written by 'vaereg train' or 'eval'")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message would suggest weights_only=False: never for an unknown file
        raise UsageError(f"{path} is not a readable vaereg checkpoint: it holds objects other than tensors and "
                         f"plain data, which vaereg never loads") from None
    except Exception as exc:  # truncated, or not a torch file at all
        raise UsageError(f"{path} is not a readable vaereg checkpoint ({type(exc).__name__}); it may be truncated "
                         f"or another kind of file") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(f"{path} is not a vaereg checkpoint of format {FORMAT}")
    for key, kind in REQUIRED.items():
        if not isinstance(payload.get(key), kind):
            raise UsageError(f"{path} is a damaged vaereg checkpoint: {key!r} is missing or not a {kind.__name__}")
    return payload


def rebuild(payload: dict[str, Any], path: Path | str = "the checkpoint") -> VAE:
    """The model a checkpoint describes, with its weights, from its JSON configs alone."""
    try:
        data = DataSpec(**payload["data"])
        options = json.loads(payload["options"])
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path} is a damaged vaereg checkpoint: its data or options do not parse ({exc})") from None
    combo: Combo = resolve(payload["canonical"], data, options)
    model = VAE(combo)
    load_weights(model, payload["model"], path)
    return model


def load_weights(model: VAE, state: dict[str, Any], path: Path | str) -> None:
    """``state`` into ``model``, or one usage error naming the first weight that does not fit."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first[1:] if line.strip()), first[0] if first else "")
        raise UsageError(f"{path}: its weights do not fit the model {model.combo.canonical} ({detail[:200]})") from None
