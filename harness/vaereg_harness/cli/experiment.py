"""Experiment files: ``vaereg eval --config exp.toml``.

A file's keys are the command's long option names, with underscores or dashes (``combo``,
``seed``, ``epochs``, ``iw_samples``, ``fid``, ``results``, ``out``, ...). Lists for the
options ``combo`` and ``seed`` run each combo once per seed; ``vaereg sweep`` sweeps a list
of any option (``vaereg_harness.cluster.sweep``) and reads the keys ``executor``, ``parallel``,
``[slurm]`` and ``[search]``, which this command passes by. Part and objective options
go in ``[set.GROUP]`` tables (or a ``set`` list of ``"GROUP.NAME=VALUE"`` strings). The file
gives defaults: an option on the command line overrides it, and ``--set`` merges over it
option by option. ``--print-config`` writes the resolved experiment back as TOML.

Values are typed strictly: booleans are TOML booleans, whole numbers TOML integers (64-bit),
other numbers finite, paths and names strings, and only the repeatable options take lists
(flat ones). ``--max-runs`` is given on the command line only: it confirms a large sweep."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import click

from vaereg import UsageError
from vaereg.config import group_assignments

NOT_IN_FILES = {"config_file", "print_config", "max_runs"}
SWEEP_KEYS = ("executor", "parallel", "slurm", "search")  # read by vaereg sweep and search; eval passes them by
INT64 = range(-(2**63), 2**63)  # TOML's integers


def option_names(command: click.Command) -> dict[str, click.Option]:
    """Long option name (underscored) -> option, for the options a file may give."""
    names = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in param.opts + param.secondary_opts:
                if opt.startswith("--"):
                    names[opt[2:].replace("-", "_")] = param
    return {name: param for name, param in names.items() if param.name not in NOT_IN_FILES}


def read_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read it ({exc.strerror or exc}); give a TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path}: not valid TOML ({exc})") from None


def expected(param: click.Option) -> tuple[tuple[type, ...], str]:
    """The TOML types a file's value (each item, for a repeatable option) may have, and their name.
    A parameter type may say its own with ``file_types`` and ``file_expects``."""
    kind = param.type
    if param.is_flag or isinstance(kind, click.types.BoolParamType):
        return (bool,), "a boolean (true or false)"
    if isinstance(kind, click.types.IntParamType):
        return (int,), "a valid integer"
    if isinstance(kind, click.types.FloatParamType):
        return (int, float), "a finite number"
    if isinstance(kind, click.Path):
        return (str,), "a path (a string)"
    if isinstance(kind, click.Choice):
        return (str,), f"one of the strings {', '.join(map(str, kind.choices))}"
    return getattr(kind, "file_types", (str,)), getattr(kind, "file_expects", "a string")


def fits(value: Any, types: tuple[type, ...]) -> bool:
    """Whether ``value`` is of ``types``: a boolean only where ``bool`` is, an integer 64-bit, a float finite."""
    if isinstance(value, bool):
        return bool in types
    if not isinstance(value, types):
        return False
    if isinstance(value, int):
        return value in INT64
    return not isinstance(value, float) or math.isfinite(value)


def shown(value: Any) -> str:
    if isinstance(value, list | dict):
        return "a list" if isinstance(value, list) else "a table"
    text = "true" if value is True else "false" if value is False else repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def checked(path: Path, key: str, param: click.Option, value: Any) -> Any:
    """A file's ``value`` for ``param``, as a list for a repeatable option; a value of the wrong
    TOML type is a usage error naming ``key``."""
    types, expects = expected(param)
    if not param.multiple:
        if fits(value, types):
            return value
        sweep = "; to sweep a list of values, run vaereg sweep --config FILE" if isinstance(value, list) else ""
        raise UsageError(f"--config {path}: {key!r}: {shown(value)} is not {expects}{sweep}")
    items = value if isinstance(value, list) else [value]
    if not items and (param.required or param.default):
        raise UsageError(f"--config {path}: {key!r}: an empty list gives none; give one, or a list of them")
    bad = next((item for item in items if not fits(item, types)), None)
    if bad is None:
        return items
    if isinstance(bad, list):
        what = "a nested list"
    else:
        what = f"{shown(bad)} in its list" if isinstance(value, list) else shown(bad)
    raise UsageError(f"--config {path}: {key!r}: {what} is not {expects} (give one, or a list of them)")


def file_sets(path: Path, value: Any) -> dict[str, dict[str, Any]]:
    """A file's ``set``: a list of ``GROUP.NAME=VALUE`` strings, or ``[set.GROUP]`` tables."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return group_assignments(value)
    if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
        return {group: dict(options) for group, options in value.items()}
    raise UsageError(f"--config {path}: 'set' should be [set.GROUP] tables or a list of 'GROUP.NAME=VALUE' strings")


def load(ctx: click.Context, path: Path, siblings: list[click.Command]) -> None:
    """Read ``path`` into the command's defaults (``ctx.default_map``); its ``set`` goes to
    ``ctx.meta['file_sets']``. Keys of a sibling command's options (``iw_samples`` for
    ``train``) are ignored, so one file serves ``train`` and ``eval``."""
    values = read_file(path)
    own = option_names(ctx.command)
    known = set(own).union(*(option_names(c) for c in siblings))
    command_line_only = {opt[2:].replace("-", "_") for param in ctx.command.params if param.name in NOT_IN_FILES
                         for opt in getattr(param, "opts", ())}
    defaults: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name == "set":
            ctx.meta["file_sets"] = file_sets(path, value)
        elif name in SWEEP_KEYS:
            continue
        elif name in own:
            param = own[name]
            value = checked(path, key, param, value)
            if param.secondary_opts and f"--{key.replace('_', '-')}" in param.secondary_opts:
                value = not value  # no_fid = true
            defaults[param.name] = value
        elif name in command_line_only:
            raise UsageError(f"--config {path}: {key!r} is given on the command line only (--{name.replace('_', '-')})")
        elif name not in known:
            options = ", ".join(sorted(set(own) - {"set"}))
            raise UsageError(f"--config {path}: unknown key {key!r}; keys are the long options: {options}, set")
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def merged_sets(ctx: click.Context, given: list[str]) -> dict[str, dict[str, Any]]:
    """The file's part and objective options, each overridden by the same ``--set`` given."""
    grouped = {group: dict(options) for group, options in ctx.meta.get("file_sets", {}).items()}
    for group, options in group_assignments(given).items():
        grouped.setdefault(group, {}).update(options)
    return grouped


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is JSON's string syntax


def resolved(ctx: click.Context, grouped: dict[str, dict[str, Any]]) -> str:
    """The experiment as TOML that ``--config`` reads back: every option's value (from the
    command line, the file or its default), then the part and objective options."""
    lines = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in NOT_IN_FILES or param.name == "assignments" or value is None or value == ():
            continue
        long = next(opt for opt in param.opts if opt.startswith("--"))
        lines.append(f"{long[2:].replace('-', '_')} = {toml_value(value)}")
    for group, options in grouped.items():
        lines.append(f"\n[set.{group}]")
        lines += [f"{name} = {toml_value(value)}" for name, value in options.items()]
    return "\n".join(lines) + "\n"
