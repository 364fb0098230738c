"""Dataclass configs <-> JSON, with errors that name the field and what would be right."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from vaereg.errors import UsageError

T = TypeVar("T")


def to_dict(config: object) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], values: dict[str, Any], *, what: str) -> T:
    """Build ``cls`` from ``values``; an unknown field is a usage error listing the known ones."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise UsageError(f"{what} has no option {unknown[0]!r}; its options: {known}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what}: {exc}") from None


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """``'encoder.latent_dim=8'`` -> ``('encoder', 'latent_dim', 8)``; values are JSON or strings."""
    key, sep, raw = text.partition("=")
    group, dot, name = key.partition(".")
    if not sep or not dot or not group or not name:
        raise UsageError(f"option {text!r} should look like GROUP.NAME=VALUE, e.g. objective.beta=0.5")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return group.strip(), name.strip(), value


def group_assignments(assignments: list[str]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for text in assignments:
        group, name, value = parse_assignment(text)
        grouped.setdefault(group, {})[name] = value
    return grouped
