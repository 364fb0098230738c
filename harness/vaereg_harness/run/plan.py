"""One run, resolved once at the edge (the command line or the Python API) and handed down: the
combo (parts, objective and their options, checked), the data, the options, the metrics it is
scored with, and the folder it writes. Nothing below re-resolves it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaereg import UsageError
from vaereg.combo import Combo, resolve
from vaereg.config import to_dict
from vaereg.data import Dataset
from vaereg.metrics import Metric
from vaereg_harness.data import safe_name
from vaereg_harness.metrics.run import build_metrics, metric_names
from vaereg_harness.run.config import HOW_IT_RUNS, RunConfig, pick_device


@dataclass(frozen=True)
class Run:
    """A resolved run. ``key`` hashes everything that shapes the trained model; ``folder``
    (``out/<dataset>-<combo>[-label]-seed<S>-<key>``) holds its checkpoint, metrics log and
    grids, so runs that differ in any setting never share one and the same settings find it
    again (``--resume``, the already-recorded check)."""

    combo: Combo
    data: Dataset
    config: RunConfig
    metrics: dict[str, Metric]
    key: str
    folder: Path

    @classmethod
    def of(cls, combo: Combo, data: Dataset, config: RunConfig, out: Path) -> Run:
        """The run of an already resolved ``combo``; its ``data`` holds out
        ``config.train.validation_images`` training images (the one place both the command line
        and the Python API hold them out)."""
        data = data.hold_out(config.train.validation_images)
        key = run_key(data, combo, config)
        conditioned = "-label" if data.spec.classes else ""
        readable = safe_name(f"{data.spec.name}-{combo.text}{conditioned}")[:120]
        folder = out / f"{readable}-seed{config.train.seed}-{key}"
        return cls(combo, data, config, build_metrics(config.metrics, data, combo, config.metric_options), key, folder)

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.pt"

    def describe(self) -> dict[str, Any]:
        """What the run trains and scores with, as the row and the trackers record it: the parts'
        options, the options, the objective it actually trains with, its metrics (the defaults
        and the added ones; a default that cannot score it leaves its columns null), and the data
        set's options where any differ from its defaults."""
        described = {"parts": self.combo.options(), **to_dict(self.config), "train": trained_options(self.config),
                     "objective": recorded_objective(self.combo), "metrics": metric_names(self.config.metrics)}
        return {**described, "dataset_options": self.data.options} if self.data.options else described


def plan(text: str, data: Dataset, options: dict[str, dict[str, Any]] | None = None,
         config: RunConfig | None = None, out: Path = Path("vaereg-runs")) -> Run:
    """Resolve ``text`` with the part ``options`` (slot -> option -> value) and the config's
    objective options for ``data``, check its metrics, and name its folder under ``out``: every
    usage error of a run is raised here, before anything is built."""
    config = config or RunConfig()
    combo = resolve(text, data.spec, {**(options or {}), "objective": config.objective})
    objective = combo.objective
    trained = data.hold_out(config.train.validation_images).train.shape[0]
    why = objective.cls.training_mismatch(combo.configs["objective"], config.train.batch_size, trained)
    if why is not None:
        raise UsageError(f"objective {objective.name!r} cannot train {text} on {data.spec.name}: {why}")
    return Run.of(combo, data, config, out)


def recorded_objective(combo: Combo) -> dict[str, Any]:
    """The objective as rows and run keys record it: its name and options. The default ``elbo``
    keeps the fields plugin API 2's one objective had (its ``iw_k`` 1, no name), so run folders
    and rows written before objectives were plugins are still found."""
    options = to_dict(combo.configs["objective"])
    if combo.objective.name == "elbo":
        return {**options, "iw_k": 1}
    return combo.objective_options()


def run_key(data: Dataset, combo: Combo, config: RunConfig) -> str:
    """A hash of everything that shapes the trained model: data set (and the options it was
    loaded with, when any differ from the defaults), combo, part options, training options (the
    device resolved) and objective. Evaluation options are left out, so scoring a trained run
    again (another K, FID on or off) finds its checkpoint."""
    train = {**trained_options(config), "device": pick_device(config.train.device).type}
    for how in HOW_IT_RUNS:
        del train[how]
    shaped = {"dataset": data.spec.name, "classes": data.spec.classes, "combo": combo.text,
              "parts": combo.options(), "train": train, "objective": recorded_objective(combo)}
    if data.options:
        shaped["dataset_options"] = data.options
    return hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()[:10]


def trained_options(config: RunConfig) -> dict[str, Any]:
    """The training options as keys and rows record them: ``validation_images`` only when given,
    so runs and rows from before the option existed are still found."""
    train = to_dict(config.train)
    if train["validation_images"] is None:
        del train["validation_images"]
    return train
