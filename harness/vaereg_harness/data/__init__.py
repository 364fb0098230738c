"""Data sets by name. Every data set, vaereg's own included (``builtin``), is a
``vaereg.DataSource`` registered through the ``register_datasets`` hook; ``load_data`` resolves
``NAME`` or ``NAME:ARGUMENT`` through the registry, builds the source's typed options, loads the
data and checks it once (``vaereg.data.check_dataset``)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from vaereg import UsageError
from vaereg.config import field_types, from_dict, to_dict
from vaereg.data import Dataset, check_dataset
from vaereg.registry import get_registry

__all__ = ["Dataset", "dataset_names", "load_data", "safe_name"]


def safe_name(text: str) -> str:
    """``text`` as a file name: every run of other characters than ``A-Za-z0-9._=-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)


def dataset_names() -> str:
    """The registered data sets as ``--dataset`` takes them: ``digits, mnist, ..., folder:PATH``."""
    entries = get_registry().entries["dataset"].values()
    return ", ".join(e.name if e.cls.argument is None else f"{e.name}:{e.cls.argument}" for e in entries)


def load_data(text: str, root: str | Path = "data", *, download: bool = False,
              options: dict[str, Any] | None = None, flags: dict[str, Any] | None = None) -> Dataset:
    """The data set ``text`` (``NAME``, or ``NAME:ARGUMENT`` as in ``folder:PATH``) from ``root``,
    built with its ``options`` (``--set dataset.NAME=VALUE``: typed and range-checked).
    ``flags`` are options the harness's own switches give (``--skip-bad-images``): a data set
    that declares them takes them, under ``options``; the others ignore them."""
    name, colon, argument = text.partition(":")
    entry = get_registry().get("dataset", name)
    source = entry.cls
    if colon and source.argument is None:
        raise UsageError(f"--dataset {text}: {name} takes nothing after ':'; give --dataset {name}")
    if not colon and source.argument is not None:
        raise UsageError(f"--dataset {name} needs a {source.argument}; give --dataset {name}:{source.argument}")
    declared = field_types(source.Config)
    given = {key: value for key, value in (flags or {}).items() if key in declared} | (options or {})
    config = from_dict(source.Config, given, what=f"dataset {name!r}")
    data = source(config).load(Path(root), download=download, argument=argument if colon else None)
    data = check_dataset(data, f"dataset {name!r} (plugin {entry.plugin!r})")
    defaults = to_dict(source.Config())
    return dataclasses.replace(data, options={k: v for k, v in to_dict(config).items() if v != defaults[k]})
