"""Dataclass configs <-> JSON, with typed options: every field's type, and its range where one
is declared, is enforced for built-in and third-party parts alike.

A range is declared next to the field with ``Annotated``::

    @dataclass
    class MyConfig:
        width: Annotated[int, Range(1, 1024)] = 64
        merge: Literal["residual", "precision"] = "residual"
        downsample: Annotated[int, Range(0, 8)] | None = None

Supported types: ``int``, ``float`` (finite), ``bool``, ``str``, ``Literal[...]`` and any of
them ``| None``. Errors name the field, the value and what would be right. A config may list
options that moved elsewhere in a class attribute ``moved`` (name -> where to find it now).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union

from vaereg.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """Bounds of a number, inclusive unless ``open_low``."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        def shown(v: float) -> str:
            return str(v) if isinstance(v, int) else f"{v:g}"

        low = "" if self.low is None else f"{'>' if self.open_low else '>='} {shown(self.low)}"
        high = "" if self.high is None else f"<= {shown(self.high)}"
        return " and ".join(p for p in (low, high) if p)


@dataclass(frozen=True)
class FieldType:
    """A config field's type as the parser enforces it."""

    base: Any  # int, float, bool, str, or a Literal
    optional: bool = False
    range: Range | None = None

    def describe(self) -> str:
        if typing.get_origin(self.base) is Literal:
            text = "one of " + ", ".join(json.dumps(c) for c in typing.get_args(self.base))
        else:
            text = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[self.base]
        if self.range is not None and self.range.describe():
            text += f" {self.range.describe()}"
        return text + (", or null" if self.optional else "")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not of this type, or None when it is."""
        if value is None:
            return None if self.optional else "null"
        base = self.base
        if typing.get_origin(base) is Literal:
            return None if value in typing.get_args(base) and type(value) is not bool else "not a choice"
        if base is bool:
            return None if isinstance(value, bool) else "not true or false"
        if base is str:
            return None if isinstance(value, str) else "not a string"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "not a number"
        if base is int and not isinstance(value, int):
            return "not an integer"
        if isinstance(value, float) and not math.isfinite(value):  # math.isfinite overflows on a huge int
            return "not finite"
        if self.range is not None and not self.range.contains(value):  # exact for ints of any size
            return "out of range"
        if abs(value) > sys.float_info.max:  # an integer no float holds: any arithmetic on it overflows
            return "too large"
        return None


def field_types(cls: type) -> dict[str, FieldType]:
    """The enforced type of every field of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: _field_type(hints[f.name], f"{cls.__name__}.{f.name}") for f in dataclasses.fields(cls)}


def _field_type(hint: Any, where: str) -> FieldType:
    optional, bounds = False, None
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"{where}: only 'X | None' unions are supported")
        hint = args[0]
    if typing.get_origin(hint) is Annotated:
        hint, *extras = typing.get_args(hint)
        bounds = next((e for e in extras if isinstance(e, Range)), None)
    if hint not in (int, float, bool, str) and typing.get_origin(hint) is not Literal:
        raise TypeError(f"{where}: option type {hint!r} is not int, float, bool, str or a Literal")
    return FieldType(hint, optional, bounds)


def check(config: object, *, what: str) -> None:
    """Check every field of the dataclass instance ``config`` whose type is an option type
    (others, such as nested configs, are left to their own checks)."""
    hints = typing.get_type_hints(type(config), include_extras=True)
    for f in dataclasses.fields(config):
        try:
            kind = _field_type(hints[f.name], f.name)
        except TypeError:
            continue
        value = getattr(config, f.name)
        problem = kind.problem(value)
        if problem is not None:
            raise UsageError(f"{what}: {f.name}={_shown(value)} is {problem}; expected {kind.describe()}")


def to_dict(config: object) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], values: dict[str, Any], *, what: str) -> T:
    """Build ``cls`` from ``values``, each checked against its field's type and range; an
    unknown field is a usage error listing the known ones."""
    known = field_types(cls)
    unknown = sorted(set(values) - set(known))
    moved = getattr(cls, "moved", {})  # option name -> where it went, for options that moved elsewhere
    if unknown and unknown[0] in moved:
        raise UsageError(f"{what} has no option {unknown[0]!r}: {moved[unknown[0]]}")
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        raise UsageError(f"{what} has no option {unknown[0]!r}; its options: {names}")
    for name, value in values.items():
        problem = known[name].problem(value)
        if problem is not None:
            raise UsageError(f"{what}: {name}={_shown(value)} is {problem}; expected {known[name].describe()}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what}: {exc}") from None


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """``'encoder.latent_dim=8'`` -> ``('encoder', 'latent_dim', 8)``; values are JSON or strings."""
    key, sep, raw = text.partition("=")
    group, dot, name = key.partition(".")
    if not sep or not dot or not group or not name:
        raise UsageError(f"option {text!r} should look like GROUP.NAME=VALUE, e.g. objective.beta=0.5")
    try:
        value = json.loads(raw, parse_constant=lambda c: raw)  # NaN and Infinity stay text: not numbers
    except (ValueError, RecursionError):  # not JSON, or an integer too long to convert
        value = raw
    return group.strip(), name.strip(), value


def group_assignments(assignments: list[str]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for text in assignments:
        group, name, value = parse_assignment(text)
        grouped.setdefault(group, {})[name] = value
    return grouped
