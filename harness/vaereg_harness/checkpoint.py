"""Checkpoints: state dicts, tensors and JSON text only, written atomically and loaded with
``weights_only=True``, so loading a checkpoint never runs code."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vaereg import DataSpec, UsageError, __version__
from vaereg.combo import Combo, resolve
from vaereg.model import VAE
from vaereg_harness.files import atomic_write

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
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise UsageError(f"no checkpoint at {path}; give the checkpoint.pt written by 'vaereg train' or 'eval'")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise UsageError(f"{path} is not a readable vaereg checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(f"{path} is not a vaereg checkpoint of format {FORMAT}")
    return payload


def rebuild(payload: dict[str, Any]) -> VAE:
    """The model a checkpoint describes, with its weights, from its JSON configs alone."""
    combo: Combo = resolve(payload["canonical"], DataSpec(**payload["data"]), json.loads(payload["options"]))
    model = VAE(combo)
    model.load_state_dict(payload["model"])
    return model
