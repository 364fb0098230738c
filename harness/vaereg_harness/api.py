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
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import torch

from vaereg import Range, __version__, collective
from vaereg.combo import Combo, resolve
from vaereg.config import check, to_dict
from vaereg.model import VAE
from vaereg.objectives import build_objective
from vaereg_harness import distributed, memory, threads
from vaereg_harness.data import Dataset, load_dataset, safe_name
from vaereg_harness.evaluate import evaluate
from vaereg_harness.fid import FIDProtocol
from vaereg_harness.images import save_grid
from vaereg_harness.logs import MetricsLog, logger_class
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

    def __post_init__(self) -> None:
        check(self, what="option")

    def describe(self, combo: Combo) -> dict[str, Any]:
        """What ``combo`` runs with, as the row and the trackers record it: the parts' options,
        this config, and the objective it actually trains with."""
        return {"parts": combo.options(), **to_dict(self), "objective": recorded_objective(combo)}


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
              condition: str | None = None, skip_bad_images: bool = False, image_mode: str | None = None) -> Dataset:
    """A data set by name (``digits``, ``mnist``, ``folder:PATH``, ...), conditioned on
    ``condition`` (``"label"``) or unconditional. For a ``folder:``, ``skip_bad_images`` skips
    (and counts) unreadable files instead of refusing them, and ``image_mode`` ("L" or "RGB")
    converts every image to one mode."""
    return load_dataset(name, root, download, skip_bad_images, image_mode).conditioned(condition)


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
    objective (before anything is built), then build it, seeded, on the configured device."""
    config = config or RunConfig()
    combo = resolve(text, data.spec, {**(options or {}), "objective": config.objective})
    device = pick_device(config.train.device)
    threads.configure(config.train.threads)
    seed_everything(config.train)
    return VAE(combo).to(device)


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


def sample_context(data: Dataset, n: int, device: torch.device, per_class: int | None = None):
    """A context for ``n`` samples: under labels, ``per_class`` of each class in turn (or the
    classes cycling); unconditional otherwise."""
    if not data.spec.classes:
        return data.context(None)
    labels = torch.arange(n, device=device)
    labels = labels // per_class % data.spec.classes if per_class else labels % data.spec.classes
    return data.context(labels)


@torch.no_grad()
def draw_samples(model: VAE, data: Dataset, n: int, per_class: int | None = None, *, mean: bool = False,
                 seed: int = 0, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` samples on the CPU (sampled pixels, or the likelihood's mean images) and their
    labels (None for an unconditional model). Chunk c draws from the stream
    ``(seed, "sample", c)``: pixels and means of the same seed share their latents, and under
    torchrun each rank draws its share of the chunks and every rank gathers them all."""
    device = next(model.parameters()).device
    context = sample_context(data, n, device, per_class)
    starts = range(0, n, chunk)
    mine = []
    for i in starts[collective.my_share(len(starts))]:
        with distributed.seeded(seed, "sample", i // chunk):
            mine.append(model.sample(min(chunk, n - i), context.select(slice(i, i + chunk)), mean=mean).cpu())
    spec = data.spec
    samples = collective.gather_rows(torch.cat(mine) if mine else torch.empty(0, spec.channels, spec.height,
                                                                               spec.width))
    return samples, None if context.label is None else context.label.cpu()


def sample_quality(model: VAE, data: Dataset, fid: FIDProtocol | str | None, n: int, folder: Path,
                   seed: int = 0) -> dict[str, Any]:
    """Sampling speed; PNG grids of samples (one row per class for a conditional model) as
    sampled pixels and as the likelihood's mean images for the same latents, and of test
    reconstructions (originals above); FID, and how often the FID classifier puts a
    conditional sample in its class. Under torchrun every rank draws its share of the samples
    and rank 0 alone scores and writes; the other ranks return nothing."""
    model.eval()
    began = time.perf_counter()
    samples, labels = draw_samples(model, data, max(n, 64) if isinstance(fid, FIDProtocol) else 64, seed=seed)
    seconds = time.perf_counter() - began
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
    quality: dict[str, Any] = {
        "sample_images_per_s": samples.shape[0] / seconds,
        "samples_png": str(save_grid(grid, folder / "samples.png", cols=8 if rows else None)),
        "samples_mean_png": str(save_grid(means, folder / "samples-mean.png", cols=8 if rows else None)),
        "reconstructions_png": str(save_grid(pairs, folder / "reconstructions.png", cols=test.x.shape[0])),
        "fid_note": fid if isinstance(fid, str) else None,
    }
    if isinstance(fid, FIDProtocol):
        quality.update(fid=fid.score(samples[:n]), fid_extractor=fid.extractor.describe(), fid_samples=n,
                       fid_reference=fid.reference, fid_floor=fid.floor,
                       fid_extractor_accuracy=fid.extractor.accuracy, fid_extractor_seconds=fid.extractor.seconds)
        if labels is not None:
            quality["condition_accuracy"] = fid.label_accuracy(samples[:n], labels[:n])
        quality["fid_seconds"] = time.perf_counter() - began
    return quality


def evaluate_model(model: VAE, data: Dataset, config: RunConfig, out: Path, *, reports: list[StageReport],
                   fid: FIDProtocol | str | None = None, progress: bool = True) -> Row | None:
    """Evaluate a trained model on the test split into a results row (not yet written).
    ``fid``: how to compute FID, or a note saying why there is none, or None when not asked.
    Under torchrun every rank scores its share; rank 0 returns the row, the others None."""
    cuda = next(model.parameters()).device.type == "cuda"
    memory.check_run(model, config.iw_chunk, config.fid_samples if isinstance(fid, FIDProtocol) else None)
    scored = data.test_subset(config.eval_images)
    seed = config.train.seed
    result = evaluate(model, scored, config.iw_samples, config.iw_chunk, progress, seed=seed)
    folder = run_dir(out, data, model.combo, config)
    quality = sample_quality(model, data, fid, config.fid_samples, folder, seed=seed)
    world = distributed.current()
    if not world.writer:
        return None
    seconds = sum(r.seconds for r in reports)
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
        nelbo_nats=result.nelbo_nats,
        nll_nats=result.nll_nats,
        nll_bpd=result.nll_bpd,
        iw_samples=result.iw_samples,
        train_seconds=seconds,
        train_images_per_s=sum(r.images for r in reports) / seconds if seconds else None,
        stage_seconds=json.dumps({r.stage: r.seconds for r in reports}),
        eval_seconds=result.seconds,
        peak_gpu_memory_mb=torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        codebook_perplexity=result.codebook_perplexity,
        codebook_usage=result.codebook_usage,
        kl_per_level=None if result.kl_per_level is None else json.dumps(result.kl_per_level),
        active_units=result.active_units,
        **quality,
        status="ok",
        vaereg_version=__version__,
        torch_version=torch.__version__,
    )


def evaluate_combo(text: str, data: Dataset, options: dict[str, dict[str, Any]], config: RunConfig, out: Path, *,
                   fid: FIDProtocol | str | None = None, resume: bool = False, progress: bool = True,
                   log: tuple[str, ...] = ()) -> Row | None:
    """Create, train and evaluate one combo: what ``vaereg eval`` does for each ``--combo``
    (under torchrun: the row on rank 0, None on the others)."""
    model = create_model(text, data, options, config)
    memory.check_run(model, config.iw_chunk, config.fid_samples if isinstance(fid, FIDProtocol) else None)
    if next(model.parameters()).device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    reports, _ = train_model(model, data, config, out, resume=resume, progress=progress, log=log)
    return evaluate_model(model, data, config, out, reports=reports, fid=fid, progress=progress)
