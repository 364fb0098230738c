"""A sweep: the points of an experiment file, the product of every option given as a list.

Any typed option may be swept: a training option (``lr = [1e-3, 3e-3]``, ``epochs``), the
combo and the seed (as before), and a part's, objective's or data set's option
(``[set.encoder] latent_dim = [8, 16]``). Each value is checked as the command line checks it.
A point is one run: its options render as the ``vaereg eval`` arguments that run it, and it is
planned through that command (``--print-config``) before anything is submitted, so a bad value
in any point stops the sweep before it starts. Options that take several values per run
(``log``, ``metrics``) keep their lists. Besides ``vaereg eval``'s keys a sweep file may give
``executor``, ``parallel``, a ``[slurm]`` table and a ``[search]`` table."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from vaereg import UsageError
from vaereg_harness.cli import experiment
from vaereg_harness.cluster import EXECUTORS

AXES_ALWAYS = {"combos", "seeds"}  # repeatable options whose lists sweep (the others are one run's list)


@dataclass(frozen=True)
class Point:
    """One run of a sweep: ``values`` (option name -> value, for ``vaereg eval``), ``sets``
    (group -> option -> value) and ``swept`` (what distinguishes it: axis -> value)."""

    values: dict[str, Any]
    sets: dict[str, dict[str, Any]]
    swept: dict[str, Any]

    @property
    def label(self) -> str:
        return " ".join(f"{axis}={json.dumps(value) if isinstance(value, str) else value}"
                        for axis, value in self.swept.items()) or "the one point"

    def args(self, command: click.Command) -> list[str]:
        """The ``vaereg eval`` arguments that run this point."""
        args: list[str] = []
        params = {p.name: p for p in command.params if isinstance(p, click.Option)}
        for name, value in self.values.items():
            param = params[name]
            long = next(opt for opt in param.opts if opt.startswith("--"))
            if param.is_flag and param.secondary_opts:
                args.append(long if value else param.secondary_opts[0])
            elif param.is_flag:
                args += [long] if value else []
            else:
                for item in value if param.multiple else [value]:
                    args += [long, rendered(item)]
        for group, options in self.sets.items():
            for name, value in options.items():
                args += ["--set", f"{group}.{name}={json.dumps(value) if not isinstance(value, str) else value}"]
        return args


def rendered(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class SweepFile:
    """An experiment file read for sweeping: its ``points`` and its sweep-only tables."""

    path: Path
    points: list[Point]
    executor: str | None
    parallel: int | None
    slurm: dict[str, Any]
    search: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.stem

    def folder(self, first: Planned) -> Path:
        """The sweep's own folder (job logs, point states): ``<out>/sweeps/<file name>``, beside
        its first point's run folder."""
        return first.folder.parent / "sweeps" / self.name


def read(path: Path, command: click.Command, *, max_runs: int) -> SweepFile:
    """The sweep of the experiment file ``path`` for ``command`` (``vaereg eval``); more than
    ``max_runs`` points is a usage error, raised before any point is built."""
    values = experiment.read_file(path)
    own = experiment.option_names(command)
    fixed: dict[str, Any] = {}
    axes: dict[str, tuple[str, list[Any]]] = {}  # axis label -> (option name or set key, values)
    sets: dict[str, dict[str, Any]] = {}
    extra: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name in experiment.SWEEP_KEYS:
            extra[name] = value
        elif name == "set":
            read_sets(path, value, sets, axes)
        elif name in own:
            param = own[name]
            if isinstance(value, list) and (not param.multiple or param.name in AXES_ALWAYS):
                items = experiment.checked(path, key, param, value) if param.multiple else [
                    experiment.checked(path, key, param, item) for item in value]
                if not items:
                    raise UsageError(f"--config {path}: {key!r}: an empty list sweeps nothing; give values")
                axes[axis_name(param)] = (param.name, list(dict.fromkeys(items)))
            else:
                checked = experiment.checked(path, key, param, value)
                if param.secondary_opts and f"--{key.replace('_', '-')}" in param.secondary_opts:
                    checked = not checked  # no_fid = true
                fixed[param.name] = checked
        elif name in experiment.NOT_IN_FILES | {"max_runs", "print_config", "config"}:
            raise UsageError(f"--config {path}: {key!r} is given on the command line only")
        else:
            keys = ", ".join(sorted({*own, *experiment.SWEEP_KEYS}))
            raise UsageError(f"--config {path}: unknown key {key!r}; keys are the long options of vaereg eval "
                             f"and the sweep's: {keys}")
    if "combos" not in fixed and "combos" not in {name for name, _ in axes.values()}:
        raise UsageError(f"--config {path}: no 'combo' given; give combo = \"gaussian\" or a list of combos")
    size = math.prod(len(items) for _, items in axes.values())
    if size > max_runs:
        raise UsageError(f"--max-runs {max_runs}: {path} sweeps {size} points; give --max-runs {size} on the "
                         f"command line to start them all")
    points = []
    for combination in itertools.product(*(items for _, items in axes.values())):
        point_values, point_sets = dict(fixed), {group: dict(options) for group, options in sets.items()}
        for (name, _), value in zip(axes.values(), combination, strict=True):
            if name.startswith("set."):
                group, option = name[4:].split(".", 1)
                point_sets.setdefault(group, {})[option] = value
            else:
                point_values[name] = [value] if name in AXES_ALWAYS else value
        points.append(Point(point_values, point_sets, dict(zip(axes, combination, strict=True))))
    executor, parallel = extra.get("executor"), extra.get("parallel")
    if executor is not None and executor not in EXECUTORS:
        raise UsageError(f"--config {path}: executor {experiment.shown(executor)} is not one of local, slurm")
    if parallel is not None and not experiment.fits(parallel, (int,)) or isinstance(parallel, int) and parallel < 1:
        raise UsageError(f"--config {path}: parallel = {experiment.shown(parallel)}: give a whole number of points "
                         f"to run at once (>= 1)")
    return SweepFile(path, points, executor, parallel, table(path, extra, "slurm"), table(path, extra, "search"))


def axis_name(param: click.Option) -> str:
    return {"combos": "combo", "seeds": "seed"}.get(param.name, param.name)


def read_sets(path: Path, value: Any, sets: dict, axes: dict) -> None:
    """``[set.GROUP]`` tables: a list value is an axis named ``set.GROUP.NAME``."""
    if isinstance(value, list):
        for group, options in experiment.file_sets(path, value).items():
            sets.setdefault(group, {}).update(options)
        return
    for group, options in experiment.file_sets(path, value).items():
        for option, given in options.items():
            if isinstance(given, list):
                bad = next((v for v in given if isinstance(v, list | dict)), None)
                if bad is not None or not given:
                    raise UsageError(f"--config {path}: set.{group}.{option}: give a value or a flat, non-empty "
                                     f"list of values to sweep")
                axes[f"set.{group}.{option}"] = (f"set.{group}.{option}", list(dict.fromkeys(given)))
            elif isinstance(given, dict):
                raise UsageError(f"--config {path}: set.{group}.{option}: a table is not a value; give a value "
                                 f"or a list of values")
            else:
                sets.setdefault(group, {})[option] = given


def table(path: Path, extra: dict[str, Any], name: str) -> dict[str, Any]:
    value = extra.get(name, {})
    if not isinstance(value, dict):
        raise UsageError(f"--config {path}: {name!r} should be a [{name}] table")
    return value


@dataclass(frozen=True)
class Planned:
    """A point as ``vaereg eval`` plans it: its arguments, run key, folder and results store."""

    point: Point
    args: list[str]
    key: str
    folder: Path
    results: Path
    description: str  # the run's resolved configuration (JSON), as its row records it


def plan_points(points: list[Point], group: click.Group) -> list[Planned]:
    """Plan every point through ``vaereg eval --print-config`` in this process: each option is
    checked and each combo resolved and probed, as the run itself will. A point that cannot
    run is a usage error naming it."""
    command = group.commands["eval"]
    planned = []
    for point in points:
        args = point.args(command)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                runs = group.main(["eval", *args, "--print-config"], prog_name="vaereg", standalone_mode=False)
        except click.ClickException as exc:
            raise UsageError(f"sweep point {point.label}: {exc.format_message()}") from None
        (run,) = runs
        planned.append(Planned(point, args, run.key, run.folder, results_of(point, command),
                               json.dumps(run.describe())))
    return planned


def results_of(point: Point, command: click.Command) -> Path:
    """The results store a point's row goes to."""
    default = next(p.default for p in command.params if p.name == "results")
    return Path(point.values.get("results", default))
