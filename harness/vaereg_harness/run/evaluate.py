"""A trained run scored into its results row: the run's metrics over the test split (one
evaluation pass and one shared draw of samples, ``vaereg_harness.metrics.run``), and the PNG
grids of samples and the model's pictures (reconstructions, traversals, interpolations, the
factor heatmap) in its folder."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import torch

from vaereg import __version__
from vaereg.data import Dataset
from vaereg.model import VAE
from vaereg_harness.launch import distributed, threads
from vaereg_harness.metrics.fid import FIDProtocol
from vaereg_harness.metrics.run import score_run
from vaereg_harness.metrics.samples import draw_samples
from vaereg_harness.run.pictures import pictures
from vaereg_harness.run.plan import Run
from vaereg_harness.run.trainer import StageReport
from vaereg_harness.store.images import save_grid, write_png
from vaereg_harness.store.results import Row

PNGS = {"traversals": "traversals.png", "interpolations": "interpolations.png",
        "reconstructions": "reconstructions.png", "factor_mi": "factor-mi.png"}  # picture -> file in the run folder


def save_grids(model: VAE, data: Dataset, folder: Path, seed: int = 0) -> dict[str, str | None]:
    """PNG grids in ``folder``: samples (one row per class for a conditional model) as sampled
    pixels and as the likelihood's mean images for the same latents, and the model's pictures
    (``vaereg_harness.run.pictures``): test reconstructions (originals above), latent traversals,
    interpolations and the factor heatmap, each None where the model or the data set cannot have
    it. Returns the row's path columns. Under torchrun every rank draws its share of the samples
    and rank 0 alone draws the pictures and writes; the other ranks return nothing."""
    model.eval()
    rows = min(data.spec.classes, 16)
    shown, per_class = (8 * rows, 8) if rows else (64, None)
    means = draw_samples(model, data, shown, per_class, mean=True, seed=seed + 1)[0]
    grid = draw_samples(model, data, shown, per_class, seed=seed + 1)[0]
    if not distributed.current().writer:
        return {}
    drawn = pictures(model, data, seed)
    return {  # absolute paths: a row's pictures are found from any working folder
        "samples_png": str(save_grid(grid, folder / "samples.png", cols=8 if rows else None).absolute()),
        "samples_mean_png": str(save_grid(means, folder / "samples-mean.png", cols=8 if rows else None).absolute()),
        **{f"{name}_png": None if drawn[name] is None else str(write_png(drawn[name], folder / file).absolute())
           for name, file in PNGS.items()},
    }


def evaluate(model: VAE, run: Run, reports: list[StageReport], *, fid: FIDProtocol | str | None = None,
             progress: bool = True) -> Row | None:
    """Score the trained ``model`` of ``run`` into its row (not yet written). ``fid``: how to
    compute FID, or a note saying why there is none, or None when not asked. Under torchrun
    every rank scores its share; rank 0 returns the row, the others None."""
    config, data = run.config, run.data
    scored = data.test_subset(config.eval_images)
    scores = score_run(model, run.metrics, data, scored, config, reports=reports, fid=fid, progress=progress)
    grids = save_grids(model, data, run.folder, seed=config.train.seed)
    world = distributed.current()
    if not world.writer:
        return None
    combo = run.combo
    return Row(
        run_id=uuid.uuid4().hex,
        created_at=datetime.now(UTC),
        combo=combo.text,
        parts=json.dumps({slot: entry.describe() for slot, entry in combo.parts.items()}),
        config=json.dumps(run.describe()),
        run_dir=str(run.folder.absolute()),
        config_hash=run.key,
        dataset=data.spec.name,
        seed=config.train.seed,
        device=str(next(model.parameters()).device),
        threads=threads.current().describe() if threads.current() else None,
        world_size=world.size,
        batch_size=config.train.batch_size,
        epochs=config.train.epochs,
        condition="label" if data.spec.classes else None,
        eval_images=scored.test.shape[0] if scored is not data else None,
        **grids,
        status="ok",
        vaereg_version=__version__,
        torch_version=torch.__version__,
        scores=scores,
    )
