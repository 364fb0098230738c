"""One combo end to end: resolve, build, train every stage, evaluate, append a results row."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from vaereg import __version__
from vaereg.combo import Combo, resolve
from vaereg.config import from_dict, to_dict
from vaereg.model import VAE
from vaereg.objectives import ObjectiveConfig
from vaereg_harness.data import Dataset, safe_name
from vaereg_harness.evaluate import evaluate
from vaereg_harness.fid import Protocol
from vaereg_harness.images import save_grid
from vaereg_harness.train import TrainConfig, Trainer, pick_device, seed_everything


@dataclass
class RunConfig:
    """Everything a run was asked for; serialised into the results row's ``config``."""

    train: TrainConfig = field(default_factory=TrainConfig)
    objective: dict[str, Any] = field(default_factory=dict)  # the user's objective.* options
    iw_samples: int = 1000
    iw_chunk: int = 128
    fid_samples: int = 1000

    @classmethod
    def from_options(cls, train: TrainConfig, grouped: dict[str, dict[str, Any]], **rest: Any) -> RunConfig:
        objective = grouped.get("objective", {})
        from_dict(ObjectiveConfig, objective, what="objective")  # a typo fails before any training
        return cls(train=train, objective=objective, **rest)

    def objective_for(self, combo: Combo) -> ObjectiveConfig:
        """The parts' objective defaults (NVAE's warm-up), overridden by the user's options."""
        return from_dict(ObjectiveConfig, {**combo.objective_defaults(), **self.objective}, what="objective")

    def describe(self, combo: Combo) -> dict[str, Any]:
        """This config as recorded for ``combo``: the objective it actually trains with."""
        return {**to_dict(self), "objective": to_dict(self.objective_for(combo))}


def run_dir(out: Path, dataset: str, combo: str, seed: int) -> Path:
    return out / safe_name(f"{dataset}-{combo}-seed{seed}")


def build(text: str, data: Dataset, options: dict[str, dict[str, Any]], config: RunConfig) -> VAE:
    """Resolve and check ``text`` (before anything is built), then build it on the device."""
    combo: Combo = resolve(text, data.spec, options)
    device = pick_device(config.train.device)
    seed_everything(config.train)
    return VAE(combo).to(device)


def train(model: VAE, data: Dataset, config: RunConfig, out: Path, *, resume: bool, progress: bool):
    path = run_dir(out, data.spec.name, model.combo.text, config.train.seed) / "checkpoint.pt"
    trainer = Trainer(model, data, config.train, config.objective_for(model.combo), path,
                      config.describe(model.combo), progress)
    return trainer.run(resume=resume), path


@torch.no_grad()
def draw_samples(model: VAE, n: int, chunk: int = 256) -> torch.Tensor:
    return torch.cat([model.sample(min(chunk, n - i)).cpu() for i in range(0, n, chunk)])


def sample_quality(model: VAE, data: Dataset, fid: Protocol | str | None, n: int, folder: Path) -> dict[str, Any]:
    """Sampling speed, PNG grids of samples and of test reconstructions (originals above), and FID."""
    model.eval()
    began = time.perf_counter()
    samples = draw_samples(model, max(n, 64) if isinstance(fid, Protocol) else 64)
    seconds = time.perf_counter() - began
    test = data.to_model(data.test[:16].to(next(model.parameters()).device), train=False)
    pairs = torch.cat([test.cpu(), model.reconstruct(test).cpu()])
    row: dict[str, Any] = {
        "sample_images_per_s": samples.shape[0] / seconds,
        "samples_png": str(save_grid(samples[:64], folder / "samples.png")),
        "reconstructions_png": str(save_grid(pairs, folder / "reconstructions.png", cols=test.shape[0])),
        "fid_note": fid if isinstance(fid, str) else None,
    }
    if isinstance(fid, Protocol):
        row.update(fid=fid.score(samples[:n]), fid_extractor=fid.extractor.describe(), fid_samples=n,
                   fid_reference=fid.reference, fid_floor=fid.floor)
    return row


def evaluate_combo(
    text: str, data: Dataset, options: dict[str, dict[str, Any]], config: RunConfig,
    out: Path, *, fid: Protocol | str | None = None, resume: bool = False, progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate one combo; returns the results row (not yet written). ``fid``: how to
    compute FID, or a note saying why there is none, or None when it was not asked for."""
    model = build(text, data, options, config)
    cuda = next(model.parameters()).device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    reports, _ = train(model, data, config, out, resume=resume, progress=progress)
    result = evaluate(model, data, config.iw_samples, config.iw_chunk, progress)
    folder = run_dir(out, data.spec.name, text, config.train.seed)
    quality = sample_quality(model, data, fid, config.fid_samples, folder)
    seconds = sum(r.seconds for r in reports)
    combo = model.combo
    return {
        "run_id": uuid.uuid4().hex,
        "created_at": datetime.now(UTC),
        "combo": text,
        "parts": json.dumps({slot: entry.describe() for slot, entry in combo.parts.items()}),
        "config": json.dumps({"parts": combo.options(), **config.describe(combo)}),
        "dataset": data.spec.name,
        "seed": config.train.seed,
        "device": str(next(model.parameters()).device),
        "epochs": config.train.epochs,
        "nelbo_nats": result.nelbo_nats,
        "nll_nats": result.nll_nats,
        "nll_bpd": result.nll_bpd,
        "iw_samples": result.iw_samples,
        "train_seconds": seconds,
        "train_images_per_s": sum(r.images for r in reports) / seconds if seconds else None,
        "stage_seconds": json.dumps({str(r.stage): r.seconds for r in reports}),
        "eval_seconds": result.seconds,
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "codebook_perplexity": result.codebook_perplexity,
        "codebook_usage": result.codebook_usage,
        "kl_per_level": None if result.kl_per_level is None else json.dumps(result.kl_per_level),
        "active_units": result.active_units,
        **quality,
        "status": "ok",
        "vaereg_version": __version__,
        "torch_version": torch.__version__,
    }
