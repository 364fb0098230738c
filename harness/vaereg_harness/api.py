"""The Python API, and the path the command line takes: load data, create a model from a combo
string, train it, evaluate it into a results row.

    from pathlib import Path
    from vaereg_harness.api import RunConfig, create_model, evaluate_model, load_data, train_model
    from vaereg_harness.train import TrainConfig

    data = load_data("digits", condition="label")
    config = RunConfig(train=TrainConfig(epochs=5), iw_samples=100)
    model = create_model("gaussian", data, config=config)
    reports, checkpoint = train_model(model, data, config, out=Path("runs"))
    row = evaluate_model(model, data, config, out=Path("runs"), reports=reports)
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import torch

from vaereg import Range, __version__
from vaereg.combo import Combo, resolve
from vaereg.config import check, to_dict
from vaereg.model import VAE
from vaereg.objectives import build_objective
from vaereg.probe import probe
from vaereg_harness import data as datasets
from vaereg_harness import distributed, memory, threads
from vaereg_harness.data import Dataset, safe_name
from vaereg_harness.fid import FIDProtocol
from vaereg_harness.images import save_grid
from vaereg_harness.logs import MetricsLog, logger_class
from vaereg_harness.metrics.run import build_metrics, metric_names, score_run
from vaereg_harness.metrics.samples import draw_samples, sample_context  # noqa: F401 (the API's names)
from vaereg_harness.results import Row
from vaereg_harness.train import StageReport, TrainConfig, Trainer, pick_device, seed_everything


@dataclass
class RunConfig:
    """Everything a run was asked for; serialised into the results row's ``config``."""

    train: TrainConfig = field(default_factory=TrainConfig)
    objective: dict[str, Any] = field(default_factory=dict)  # the user's objective.* options
    iw_samples: Annotated[int, Range(1, 1_000_000)] = 1000
    iw_chunk: Annotated[int, Range(1, 65536)] = 128
    fid_samples: Annotated[int, Range(2, 100_000)] = 1000
    eval_images: Annotated[int, Range(1, 100_000_000)] | None = None  # a fixed subset of the test split
    metrics: tuple[str, ...] = ()  # metrics added to the defaults (--metrics)

    def __post_init__(self) -> None:
        check(self, what="option")

    def describe(self, combo: Combo) -> dict[str, Any]:
        """What ``combo`` runs with, as the row and the trackers record it: the parts' options,
        this config, the objective it actually trains with, and the metrics it is scored with: the
        defaults and ``metrics`` (a default that cannot score it, such as class accuracy without
        labels, leaves its columns null)."""
        return {"parts": combo.options(), **to_dict(self), "objective": recorded_objective(combo),
                "metrics": metric_names(self.metrics)}


def recorded_objective(combo: Combo) -> dict[str, Any]:
    """The objective as rows and run keys record it. The built-in ``elbo`` and ``iwae`` keep the
    fields plugin API 2's one objective had (``iw_k`` 1 for the ELBO), so run folders and rows
    written before objectives were plugins are still found; any other objective is its name
    and its options."""
    options = to_dict(combo.configs["objective"])
    if combo.objective.name == "elbo":
        return {**options, "iw_k": 1}
    if combo.objective.name == "iwae":
        return {"beta": 1.0, "warmup": 0.0, "free_bits": 0.0, "kl_balance": False, **options}
    return combo.objective_options()


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


def run_key(data: Dataset, combo: Combo, config: RunConfig) -> str:
    """A hash of everything that shapes the trained model: data set, combo, part options,
    training options (the device resolved) and objective. Evaluation options are left out,
    so scoring a trained run again (another K, FID on or off) finds its checkpoint."""
    train = {**to_dict(config.train), "device": pick_device(config.train.device).type}
    for how in ("threads", "checkpoint_every"):  # how it runs, not what it computes
        del train[how]
    shaped = {"dataset": data.spec.name, "classes": data.spec.classes, "combo": combo.text,
              "parts": combo.options(), "train": train, "objective": recorded_objective(combo)}
    return hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()[:10]


def run_dir(out: Path, data: Dataset, combo: Combo, config: RunConfig) -> Path:
    """``out/<dataset>-<combo>[-label]-seed<S>-<run_key>``: runs that differ in any setting
    never share a folder; the same settings find it again (``--resume``)."""
    conditioned = "-label" if data.spec.classes else ""
    readable = safe_name(f"{data.spec.name}-{combo.text}{conditioned}")[:120]
    return out / f"{readable}-seed{config.train.seed}-{run_key(data, combo, config)}"


def create_model(text: str, data: Dataset, options: dict[str, dict[str, Any]] | None = None,
                 config: RunConfig | None = None) -> VAE:
    """Resolve and check ``text`` with the part ``options`` (slot -> field -> value) and the
    objective (before anything is built), then build it, seeded, on the configured device, and
    probe it on two images of ``data`` (``vaereg.probe``: a broken part contract is a usage
    error naming the plugin; the random stream is left as it was)."""
    config = config or RunConfig()
    combo = resolve(text, data.spec, {**(options or {}), "objective": config.objective})
    device = pick_device(config.train.device)
    threads.configure(config.train.threads)
    seed_everything(config.train)
    model = VAE(combo).to(device)
    probe(model, data)
    return model


def train_model(model: VAE, data: Dataset, config: RunConfig, out: Path, *, resume: bool = False,
                progress: bool = True, log: tuple[str, ...] = ()) -> tuple[list[StageReport], Path]:
    """Train every stage the parts declare. The checkpoint and ``metrics.jsonl`` go to the run
    folder under ``out``; ``log`` names more trackers (``tensorboard``, or a plugin's). Under
    torchrun every rank trains and rank 0 alone writes."""
    folder = run_dir(out, data, model.combo, config)
    described = {"combo": model.combo.text, "world_size": distributed.current().size,
                 **config.describe(model.combo)}
    loggers = []
    if distributed.current().writer:
        loggers = [MetricsLog(folder, described, resume=resume)]
        loggers += [logger_class(name)(folder, described) for name in log]
    trainer = Trainer(model, data, config.train, build_objective(model.combo), folder / "checkpoint.pt",
                      progress, loggers)
    return trainer.run(resume=resume), folder / "checkpoint.pt"


def save_grids(model: VAE, data: Dataset, folder: Path, seed: int = 0) -> dict[str, str | None]:
    """PNG grids in ``folder``: samples (one row per class for a conditional model) as sampled
    pixels and as the likelihood's mean images for the same latents, and test reconstructions
    (originals above). Under torchrun every rank draws its share and rank 0 alone writes; the
    other ranks return nothing."""
    model.eval()
    rows = min(data.spec.classes, 16)
    shown, per_class = (8 * rows, 8) if rows else (64, None)
    means = draw_samples(model, data, shown, per_class, mean=True, seed=seed + 1)[0]
    grid = draw_samples(model, data, shown, per_class, seed=seed + 1)[0]
    if not distributed.current().writer:
        return {}
    device = next(model.parameters()).device
    labels16 = data.test_labels[:16].to(device) if data.spec.classes else None
    test = data.batch(data.test[:16].to(device), labels16, train=False)
    with distributed.seeded(seed, "reconstruct"):
        pairs = torch.cat([test.x.cpu(), model.reconstruct(test).cpu()])
    return {
        "samples_png": str(save_grid(grid, folder / "samples.png", cols=8 if rows else None)),
        "samples_mean_png": str(save_grid(means, folder / "samples-mean.png", cols=8 if rows else None)),
        "reconstructions_png": str(save_grid(pairs, folder / "reconstructions.png", cols=test.x.shape[0])),
    }


def evaluate_model(model: VAE, data: Dataset, config: RunConfig, out: Path, *, reports: list[StageReport],
                   fid: FIDProtocol | str | None = None, progress: bool = True) -> Row | None:
    """Evaluate a trained model on the test split into a results row (not yet written).
    ``fid``: how to compute FID, or a note saying why there is none, or None when not asked.
    Its metric columns are the run's metrics' (``config.metrics`` added to the defaults).
    Under torchrun every rank scores its share; rank 0 returns the row, the others None."""
    memory.check_run(model, config.iw_chunk, config.fid_samples if isinstance(fid, FIDProtocol) else None)
    scored = data.test_subset(config.eval_images)
    scores = score_run(model, data, scored, config, reports=reports, fid=fid, progress=progress)
    folder = run_dir(out, data, model.combo, config)
    grids = save_grids(model, data, folder, seed=config.train.seed)
    world = distributed.current()
    if not world.writer:
        return None
    combo = model.combo
    return Row(
        run_id=uuid.uuid4().hex,
        created_at=datetime.now(UTC),
        combo=combo.text,
        parts=json.dumps({slot: entry.describe() for slot, entry in combo.parts.items()}),
        config=json.dumps(config.describe(combo)),
        run_dir=str(folder),
        config_hash=run_key(data, combo, config),
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


def evaluate_combo(text: str, data: Dataset, options: dict[str, dict[str, Any]], config: RunConfig, out: Path, *,
                   fid: FIDProtocol | str | None = None, resume: bool = False, progress: bool = True,
                   log: tuple[str, ...] = ()) -> Row | None:
    """Create, train and evaluate one combo: what ``vaereg eval`` does for each ``--combo``
    (under torchrun: the row on rank 0, None on the others)."""
    model = create_model(text, data, options, config)
    build_metrics(config.metrics, data, model.combo)  # a metric that cannot score it stops it before training
    memory.check_run(model, config.iw_chunk, config.fid_samples if isinstance(fid, FIDProtocol) else None)
    if next(model.parameters()).device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    reports, _ = train_model(model, data, config, out, resume=resume, progress=progress, log=log)
    return evaluate_model(model, data, config, out, reports=reports, fid=fid, progress=progress)
