"""The report's part on ``vaereg search``'s Optuna studies: per study in the SQLite file beside the
results store, its trials' history (each value by trial number and the best so far), its parameter
importances (fANOVA: Hutter, Hoos and Leyton-Brown 2014, "An efficient approach for assessing
hyperparameter importance") and a table of its trials, each complete one beside its row's run folder.

The file is read from a snapshot (SQLite's backup API over a read-only connection), so the report
never creates, locks for writing, migrates or changes it. Optuna is imported only when the file
exists; without Optuna, or for a file that holds no readable studies, the report says so in one note."""

from __future__ import annotations

import sqlite3
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vaereg_harness.store.report import Image, file_stem, plain, save_figure

if TYPE_CHECKING:
    import optuna

IMPORTANCE_SEED = 0  # fANOVA's forest is random: a fixed seed draws the same bars for the same trials


def studies_file(results: Path) -> Path:
    """The SQLite file of the studies whose trials write rows to ``results``: beside it, as
    ``vaereg search`` stores them by default."""
    return results.resolve().with_name(results.name + "-studies.db")


@dataclass
class Cell:
    """A table cell: its text and the value its column sorts by ("" for none)."""

    text: str
    sort: str


@dataclass
class StudyPart:
    """One study's part of the report: a summary line, notes (why a figure is missing), the trials'
    table (headings, then one row of cells per trial) and the figures."""

    name: str
    summary: str
    notes: list[str]
    headings: list[str]
    rows: list[list[Cell]]
    plots: list[Image]


def read_studies(results: Path, rows: list[dict[str, Any]], figures: Path) -> tuple[list[StudyPart], list[str]]:
    """Each study's part, drawn under ``figures``, and the notes on the file as a whole (Optuna
    missing, the file unreadable); nothing at all when ``results`` has no studies file beside it."""
    path = studies_file(results)
    if not path.is_file():
        return [], []
    try:
        import optuna
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:
        return [], [f"{path}: Optuna studies are not shown without Optuna; pip install 'vaereg[cluster]'"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_dirs: dict[str, str] = {}
    for r in rows:
        if r.get("config_hash") and r.get("run_dir"):
            run_dirs.setdefault(r["config_hash"], r["run_dir"])
    with tempfile.TemporaryDirectory(prefix="vaereg-studies-") as tmp:
        copy = Path(tmp) / "studies.db"
        storage = None
        try:
            snapshot(path, copy)
            storage = optuna.storages.RDBStorage(f"sqlite:///{copy}")
            names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
            studies = [optuna.load_study(study_name=name, storage=storage) for name in sorted(names)]
            parts = [study_part(study, run_dirs, figures) for study in studies]
        except (sqlite3.Error, SQLAlchemyError, optuna.exceptions.OptunaError, RuntimeError, ValueError) as exc:
            why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            return [], [f"{path}: not readable as Optuna studies ({why}); the studies are left out"]
        finally:
            if storage is not None:
                storage.engine.dispose()
    return parts, [] if parts else [f"{path}: holds no Optuna study"]


def snapshot(path: Path, copy: Path) -> None:
    """Copy the SQLite database ``path`` to ``copy`` through a read-only connection: a consistent
    copy even while a search writes to it, and ``path`` itself is never written."""
    source = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def cell(value: Any) -> Cell:
    """A value's cell: floats to 6 significant digits, sorted by the full value; None empty."""
    return Cell("", "") if value is None else Cell(number(value), str(value))


def study_part(study: optuna.Study, run_dirs: dict[str, str], figures: Path) -> StudyPart:
    """``study``'s summary, table and figures; ``run_dirs``: each row's run folder by its ``config_hash``."""
    import optuna

    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    metric = str(study.user_attrs.get("metric", "value"))
    if len(study.directions) != 1:
        return StudyPart(study.study_name, f"{len(trials)} trials", ["a multi-objective study: not shown"], [], [], [])
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    best = (max if maximize else min)(complete, key=lambda t: t.value) if complete else None  # the first of ties
    counts = Counter(t.state.name.lower() for t in trials)
    summary = f"{'maximize' if maximize else 'minimize'} {metric}; {len(trials)} trials" + (
        ": " + ", ".join(f"{n} {state}" for state, n in counts.items()) if counts else "")
    params = sorted({name for t in trials for name in t.params})
    headings = ["trial", "state", metric, "best", *params, "last reported (epoch)", "run folder"]
    rows = []
    for t in trials:
        last = max(t.intermediate_values.items()) if t.intermediate_values else None
        mark = "best" if t is best else ""
        key = t.user_attrs.get("run_key")
        run_dir = run_dirs.get(key, "") if isinstance(key, str) else ""
        rows.append([cell(t.number), cell(t.state.name.lower()), cell(t.value), Cell(mark, mark),
                     *(cell(t.params.get(p)) for p in params),
                     Cell("", "") if last is None else Cell(f"{number(last[1])} ({last[0]})", str(last[1])),
                     Cell(run_dir, run_dir)])
    stem = f"study-{file_stem(study.study_name)}"
    notes: list[str] = []
    plots: list[Image] = []
    if complete:
        plots.append(history(trials, complete, maximize, metric, figures / f"{stem}-history.png"))
    else:
        notes.append("no trial has completed yet: no history to draw")
    drawn = importances(study, complete, metric, figures / f"{stem}-importance.png")
    if isinstance(drawn, Image):
        plots.append(drawn)
    else:
        notes.append(drawn)
    return StudyPart(study.study_name, summary, notes, headings, rows, plots)


def history(trials: list[optuna.trial.FrozenTrial], complete: list[optuna.trial.FrozenTrial], maximize: bool,
            metric: str, path: Path) -> Image:
    """Each complete trial's value by trial number, the best so far as a step line, and the pruned
    and failed trials as marks along the bottom (they have no value)."""
    values = [t.value for t in complete]
    best_so_far = [(max if maximize else min)(values[: i + 1]) for i in range(len(values))]
    ended = {state: [t.number for t in trials if t.state.name == state] for state in ("PRUNED", "FAIL")}

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        numbers = [t.number for t in complete]
        ax.plot(numbers, values, "o", color="tab:blue", label="complete trial")
        ax.step(numbers, best_so_far, where="post", color="tab:red",
                label=f"best so far ({'max' if maximize else 'min'})")
        bottom = ax.get_xaxis_transform()  # x in data, y in axes: a mark at the foot of the plot
        if ended["PRUNED"]:
            ax.plot(ended["PRUNED"], [0.03] * len(ended["PRUNED"]), "o", mfc="none", color="tab:gray",
                    transform=bottom, label="pruned (no value)")
        if ended["FAIL"]:
            ax.plot(ended["FAIL"], [0.03] * len(ended["FAIL"]), "x", color="black", transform=bottom,
                    label="failed (no value)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial")
        ax.set_ylabel(plain(metric))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)

    return Image(save_figure(draw, path, (6.4, 4.4)), f"{metric} of each trial and the best so far")


def importances(study: optuna.Study, complete: list[optuna.trial.FrozenTrial], metric: str,
                path: Path) -> Image | str:
    """The fANOVA importance of each parameter for the complete trials' values as a bar chart, or a
    note saying why there is none."""
    import optuna

    varying = [p for p in {name for t in complete for name in t.params}
               if len({repr(t.params.get(p)) for t in complete}) > 1]
    if len(complete) < 2 or not varying:
        why = f"{len(complete)} complete trial{'s' if len(complete) != 1 else ''}" if len(complete) < 2 else \
            "no parameter varies among the complete trials"
        return f"no parameter importances: {why} (they need 2 complete trials that differ in a parameter)"
    try:
        scores = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED))
    except (ValueError, RuntimeError) as exc:
        return f"no parameter importances: {(str(exc).splitlines() or [type(exc).__name__])[0][:200]}"
    names = list(scores)

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        ax.barh(range(len(names)), [scores[n] for n in names], color="tab:blue")
        ax.set_yticks(range(len(names)), [plain(n) for n in names])
        ax.invert_yaxis()  # the most important on top
        ax.set_xlabel(f"importance for {plain(metric)} (fANOVA, sums to 1)")
        ax.grid(alpha=0.3, axis="x")

    listed = ", ".join(f"{n} {scores[n]:.3f}" for n in names)
    return Image(save_figure(draw, path, (6.4, 0.6 + 0.4 * len(names) + 1.2)),
                 f"parameter importances (fANOVA) of {len(complete)} complete trials: {listed}")
