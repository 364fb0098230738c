"""``vaereg search``: an Optuna study over the typed ranges of an experiment file's
``[search.space]``, each trial one run through the sweep's executors.

The file gives every other option one value, and ranges for the searched ones::

    [search]
    trials = 20
    metric = "nll_nats"                     # a results column; its declared direction is the study's
    [search.space]
    lr = { low = 1e-4, high = 1e-2, log = true }
    "set.encoder.latent_dim" = { choices = [4, 8, 16] }   # or { low = 4, high = 16, step = 4 }

A trial's value is its row's ``metric``. The median pruner (Optuna's ``MedianPruner``) stops a
trial whose validation ELBO (the ``validation_images`` held out of the training split, never
the test split) is worse than the median of earlier trials at the same epoch; a pruned trial
writes no row. The study lives in SQLite next to the results store unless ``storage`` names
another SQLAlchemy URL (a PostgreSQL server lets workers on many machines share it). Locally
each trial is asked for when a slot frees, so the sampler learns from every finished trial;
on Slurm the trials are asked for together and submitted as one array. Each trial records its
run key, so its row is found from the study and the study's best trial from its row."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from vaereg import Range, UsageError
from vaereg.config import from_dict
from vaereg_harness.cluster import trials
from vaereg_harness.cluster.jobs import PointJob
from vaereg_harness.cluster.sweep import Planned, Point
from vaereg_harness.store.leaderboard import sortable
from vaereg_harness.store.results import recorded
from vaereg_harness.store.studies import studies_file


@dataclass
class SearchOptions:
    """The ``[search]`` table (besides ``space``). ``trials``: finished trials (complete or
    pruned) the study should hold; a rerun adds only the missing ones. ``startup_trials`` and
    ``warmup_epochs``: the median pruner prunes nothing before that many trials have finished,
    nor before that epoch."""

    trials: Annotated[int, Range(1, 100_000)] = 20
    metric: str = "nll_nats"
    study: str | None = None
    storage: str | None = None
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "none"] = "median"
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    startup_trials: Annotated[int, Range(0, 100_000)] = 5
    warmup_epochs: Annotated[int, Range(0, 1_000_000)] = 1


@dataclass(frozen=True)
class Search:
    options: SearchOptions
    space: dict[str, BaseDistribution]  # axis ("lr", "set.encoder.latent_dim") -> its range
    direction: Literal["minimize", "maximize"]
    storage: str
    study: str

    @property
    def pruner(self) -> tuple[str, int, int]:
        return self.options.pruner, self.options.startup_trials, self.options.warmup_epochs


def read_search(path: Path, table: dict[str, Any], results: Path, has_validation: bool) -> Search:
    """The file's ``[search]`` table, checked: its options, its space, the metric's direction."""
    where = f"--config {path} [search]"
    given = dict(table)
    space = read_space(where, given.pop("space", None))
    options = from_dict(SearchOptions, given, what=where)
    columns = sortable()
    column = columns.get(options.metric)
    if column is None or column.higher_is_better is None:
        scored = ", ".join(name for name, c in columns.items() if c.higher_is_better is not None)
        raise UsageError(f"{where}: metric {options.metric!r} is not a score with a direction; scores: {scored}")
    if options.pruner != "none" and not has_validation:
        raise UsageError(f"{where}: pruning needs a validation split to score each epoch: give validation_images = N "
                         f"(images held out of the training split), or pruner = \"none\"")
    storage = options.storage or f"sqlite:///{studies_file(results)}"
    return Search(options, space, "maximize" if column.higher_is_better else "minimize", storage,
                  options.study or path.stem)


def read_space(where: str, table: Any) -> dict[str, BaseDistribution]:
    """``[search.space]``: axis -> ``{low, high[, log][, step]}`` or ``{choices = [...]}``; nested
    tables (``[search.space.set.encoder]``) name ``set.encoder.NAME``."""
    if not isinstance(table, dict) or not table:
        raise UsageError(f"{where}: give the ranges to search in [search.space], e.g. lr = {{ low = 1e-4, "
                         f"high = 1e-2, log = true }}")
    space: dict[str, BaseDistribution] = {}

    def visit(prefix: str, entries: dict[str, Any]) -> None:
        for key, value in entries.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
                visit(f"{name}.", value)
            else:
                space[name] = distribution(where, name, value)

    visit("", table)
    return space


def distribution(where: str, name: str, value: Any) -> BaseDistribution:
    """One axis's range: integers when both bounds (and the step) are integers."""
    if not isinstance(value, dict):
        raise UsageError(f"{where}: space {name!r}: give {{ low = ..., high = ... }} or {{ choices = [...] }}")
    unknown = set(value) - {"low", "high", "log", "step", "choices"}
    if unknown:
        raise UsageError(f"{where}: space {name!r}: unknown key {sorted(unknown)[0]!r}; keys: low, high, log, step, "
                         f"choices")
    if "choices" in value:
        choices = value["choices"]
        if not isinstance(choices, list) or not choices or any(isinstance(c, list | dict) for c in choices):
            raise UsageError(f"{where}: space {name!r}: choices should be a non-empty list of values")
        return CategoricalDistribution(list(dict.fromkeys(choices)))
    low, high, log, step = value.get("low"), value.get("high"), value.get("log", False), value.get("step")
    numbers = [v for v in (low, high, step) if v is not None]
    if low is None or high is None or any(isinstance(v, bool) or not isinstance(v, int | float) for v in numbers):
        raise UsageError(f"{where}: space {name!r}: low and high should be numbers")
    if not isinstance(log, bool) or not low <= high or (log and low <= 0):
        raise UsageError(f"{where}: space {name!r}: give low <= high (both > 0 with log = true), log true or false")
    try:
        if all(isinstance(v, int) for v in numbers):
            return IntDistribution(low, high, log=log, step=step or 1)
        return FloatDistribution(float(low), float(high), log=log, step=step)
    except ValueError as exc:
        raise UsageError(f"{where}: space {name!r}: {exc}") from None


def point_of(base: Point, params: dict[str, Any]) -> Point:
    """The base point with the trial's ``params`` (axis -> value)."""
    values, sets = dict(base.values), {group: dict(options) for group, options in base.sets.items()}
    for axis, value in params.items():
        if axis.startswith("set."):
            group, _, option = axis[4:].partition(".")
            sets.setdefault(group, {})[option] = value
        else:
            values[{"combo": "combos", "seed": "seeds"}.get(axis, axis)] = [value] if axis in ("combo", "seed") \
                else value
    return Point(values, sets, dict(params))


def corners(base: Point, space: dict[str, BaseDistribution]) -> list[Point]:
    """Points that put each axis at each end of its range (each choice), the others at their
    low end: planned before the study starts, so a range no run can take is refused at once."""
    def ends(d: BaseDistribution) -> list[Any]:
        return list(d.choices) if isinstance(d, CategoricalDistribution) else [d.low, d.high]

    lows = {axis: ends(d)[0] for axis, d in space.items()}
    return [point_of(base, {**lows, axis: end}) for axis, d in space.items() for end in ends(d)]


def open_study(search: Search) -> optuna.Study:
    """The study (made if new). Its sampler's seed moves on by the trials it already holds, so a
    rerun asks for new points rather than the first run's again."""
    options = search.options
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=search.study, storage=search.storage, direction=search.direction,
                                pruner=trials.make_pruner(*search.pruner), load_if_exists=True)
    study.set_user_attr("metric", options.metric)  # for the report: what each trial's value is
    seed = options.seed + len(study.get_trials(deepcopy=False))
    study.sampler = (optuna.samplers.TPESampler(seed=seed) if options.sampler == "tpe"
                     else optuna.samplers.RandomSampler(seed=seed))
    return study


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


class TrialJob(PointJob):
    """One trial as a job: the point's run reports each epoch to the trial (``--log optuna``)
    and, once its row is written, the trial is told the row's ``metric``."""

    def __init__(self, planned: Planned, args: list[str], state: Path, ref: trials.TrialRef, metric: str):
        super().__init__([*args, "--log", "optuna"], state)
        self.ref, self.metric = ref, metric
        self.results, self.key, self.description = planned.results, planned.key, planned.description

    def __call__(self) -> int:
        trials.current = self.ref
        return super().__call__()

    def outcome(self, code: int, message: str) -> str:
        study = optuna.load_study(study_name=self.ref.study, storage=self.ref.storage)
        state = next(t.state for t in study.get_trials(deepcopy=False) if t.number == self.ref.number)
        if state == optuna.trial.TrialState.PRUNED:
            return "pruned"
        row = recorded(self.results, self.key, self.description) if code == 0 else None
        value = None if row is None else row.get(self.metric)
        if value is None:
            if state == optuna.trial.TrialState.RUNNING:
                study.tell(self.ref.number, state=optuna.trial.TrialState.FAIL)
            return super().outcome(code or 1, message)
        if state == optuna.trial.TrialState.RUNNING:
            study.tell(self.ref.number, float(value))
        return "done"
