"""The Python API: the path the command line takes, for notebooks and scripts too. Load data,
plan a run (the combo resolved once, with its options, metrics and folder), build its model,
train it and evaluate it into a results row.

    from pathlib import Path
    from vaereg_harness.api import RunConfig, TrainConfig, create_model, evaluate_model, load_data, train_model

    data = load_data("digits", condition="label")
    config = RunConfig(train=TrainConfig(epochs=5), iw_samples=100)
    model = create_model("gaussian", data, config=config)
    reports, checkpoint = train_model(model, data, config, out=Path("runs"))
    row = evaluate_model(model, data, config, out=Path("runs"), reports=reports)

or, one run planned once and handed down: ``evaluate_run(plan("gaussian", data, config=config))``.

A trained model's pictures come back as uint8 arrays ``[H, W, C]`` (``PIL.Image.fromarray``
shows one; ``write_png`` saves one): ``pictures(model, data, seed)`` gives them all by name, None
where the model or the data set cannot have one; ``traversals``, ``interpolations``,
``reconstructions`` and ``factor_mi`` (a heatmap; ``factor_mi_matrix`` the numbers) one each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vaereg.data import Dataset
from vaereg.model import VAE
from vaereg.objectives import build_objective
from vaereg_harness import data as datasets
from vaereg_harness.launch import distributed
from vaereg_harness.logs import MetricsLog, logger_class
from vaereg_harness.metrics.fid import FIDProtocol
from vaereg_harness.metrics.samples import draw_samples, sample_context
from vaereg_harness.run import memory
from vaereg_harness.run.build import build
from vaereg_harness.run.config import RunConfig, TrainConfig
from vaereg_harness.run.evaluate import evaluate, save_grids
from vaereg_harness.run.pictures import (
    factor_mi,
    factor_mi_matrix,
    interpolations,
    pictures,
    reconstructions,
    traversals,
)
from vaereg_harness.run.plan import Run, plan, recorded_objective, run_key
from vaereg_harness.run.trainer import StageReport, Trainer
from vaereg_harness.store.images import write_png
from vaereg_harness.store.results import Row

__all__ = ["Dataset", "Row", "Run", "RunConfig", "StageReport", "TrainConfig", "build", "create_model", "draw_samples",
           "evaluate_combo", "evaluate_model", "evaluate_run", "factor_mi", "factor_mi_matrix", "interpolations",
           "load_data", "pictures", "plan", "reconstructions", "recorded_objective", "run_dir", "run_key",
           "sample_context", "save_grids", "train_model", "train_run", "traversals", "write_png"]


def load_data(name: str = "digits", root: str | Path = "data", *, download: bool = False,
              condition: str | None = None, skip_bad_images: bool = False, image_mode: str | None = None,
              options: dict[str, Any] | None = None) -> Dataset:
    """A registered data set by name (``digits``, ``mnist``, ``folder:PATH``, a plugin's, ...)
    with its ``options`` (option -> value, as ``--set dataset.NAME=VALUE``), conditioned on
    ``condition`` (``"label"``) or unconditional. For a ``folder:``, ``skip_bad_images`` skips
    (and counts) unreadable files instead of refusing them, and ``image_mode`` ("L" or "RGB")
    converts every image to one mode."""
    flags = {"skip_bad_images": skip_bad_images, "image_mode": image_mode}
    return datasets.load_data(name, root, download=download, options=options, flags=flags).conditioned(condition)


def run_dir(out: Path, data: Dataset, combo, config: RunConfig) -> Path:
    """The folder a run of the resolved ``combo`` writes under ``out`` (``Run.folder``)."""
    return Run.of(combo, data, config, out).folder


def create_model(text: str, data: Dataset, options: dict[str, dict[str, Any]] | None = None,
                 config: RunConfig | None = None) -> VAE:
    """Resolve and check ``text`` with the part ``options`` (slot -> option -> value) and the
    config's objective options, then build it, seeded, on the configured device, and probe it on
    two images of ``data`` (a broken part contract is a usage error naming the plugin)."""
    return build(plan(text, data, options, config))


def train_run(model: VAE, run: Run, *, resume: bool = False, progress: bool = True,
              log: tuple[str, ...] = ()) -> tuple[list[StageReport], Path]:
    """Train every stage of ``run``'s model. The checkpoint and ``metrics.jsonl`` go to its
    folder; ``log`` names more trackers (``tensorboard``, or a plugin's). Under torchrun every
    rank trains and rank 0 alone writes."""
    loggers = []
    if distributed.current().writer:
        described = {"combo": run.combo.text, "world_size": distributed.current().size, **run.describe()}
        loggers = [MetricsLog(run.folder, described, resume=resume)]
        loggers += [logger_class(name)(run.folder, described) for name in log]
    trainer = Trainer(model, run.data, run.config.train, build_objective(run.combo), run.checkpoint, progress,
                      loggers)
    return trainer.run(resume=resume), run.checkpoint


def train_model(model: VAE, data: Dataset, config: RunConfig, out: Path, *, resume: bool = False,
                progress: bool = True, log: tuple[str, ...] = ()) -> tuple[list[StageReport], Path]:
    """``train_run`` for a model from ``create_model``, its run folder under ``out``."""
    return train_run(model, Run.of(model.combo, data, config, out), resume=resume, progress=progress, log=log)


def evaluate_model(model: VAE, data: Dataset, config: RunConfig, out: Path, *, reports: list[StageReport],
                   fid: FIDProtocol | str | None = None, progress: bool = True) -> Row | None:
    """Evaluate a trained model on the test split into a results row (not yet written), with the
    run's metrics (``config.metrics`` added to the defaults). ``fid``: how to compute FID, or a
    note saying why there is none, or None when not asked. Under torchrun every rank scores its
    share; rank 0 returns the row, the others None."""
    memory.check_run(model, config.iw_chunk, config.fid_samples if isinstance(fid, FIDProtocol) else None)
    return evaluate(model, Run.of(model.combo, data, config, out), reports, fid=fid, progress=progress)


def evaluate_run(run: Run, *, fid: FIDProtocol | str | None = None, resume: bool = False, progress: bool = True,
                 log: tuple[str, ...] = (), probed: bool = False) -> Row | None:
    """Build, train and evaluate one planned run: what ``vaereg eval`` does for each run (under
    torchrun: the row on rank 0, None on the others). ``probed``: its combo was probed already."""
    model = build(run, probed=probed)
    memory.check_run(model, run.config.iw_chunk, run.config.fid_samples if isinstance(fid, FIDProtocol) else None)
    if next(model.parameters()).device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    reports, _ = train_run(model, run, resume=resume, progress=progress, log=log)
    return evaluate(model, run, reports, fid=fid, progress=progress)


def evaluate_combo(text: str, data: Dataset, options: dict[str, dict[str, Any]], config: RunConfig, out: Path, *,
                   fid: FIDProtocol | str | None = None, resume: bool = False, progress: bool = True,
                   log: tuple[str, ...] = ()) -> Row | None:
    """``evaluate_run`` of ``text`` planned on ``data``, its folder under ``out``."""
    return evaluate_run(plan(text, data, options, config, out), fid=fid, resume=resume, progress=progress, log=log)
