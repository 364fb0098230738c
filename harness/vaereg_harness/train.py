"""Training stages: stage 1 fits the autoencoder, stage 2 (when the prior asks for it) fits the
prior on the codes of the frozen stage-1 encoder. A checkpoint is written after every epoch."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vaereg import UsageError, VaeregError
from vaereg.model import VAE
from vaereg.objectives import ObjectiveConfig, training_loss
from vaereg_harness import checkpoint
from vaereg_harness.data import Dataset


class TrainingDiverged(VaeregError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    epochs: int = 20
    prior_epochs: int | None = None  # stage 2; defaults to ``epochs``
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    compile: bool = False  # torch.compile every part's forward

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("need epochs >= 1, batch_size >= 1 and lr > 0")

    def stage_epochs(self, stage: int) -> int:
        return self.epochs if stage == 1 or self.prior_epochs is None else self.prior_epochs


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but torch sees no CUDA device; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def compile_parts(model: VAE) -> None:
    """torch.compile each part module's forward in place (a coupled part once)."""
    for module in {id(m): m for m in (model.encoder, model.decoder, model.prior, model.likelihood)}.values():
        module.compile()


def seed_everything(config: TrainConfig) -> None:
    torch.manual_seed(config.seed)
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


@dataclass
class StageReport:
    stage: int
    seconds: float = 0.0
    images: int = 0
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


class Trainer:
    """Runs every stage of ``model`` on ``data``, resuming from ``checkpoint_path`` if asked."""

    def __init__(
        self,
        model: VAE,
        data: Dataset,
        config: TrainConfig,
        objective: ObjectiveConfig,
        checkpoint_path: Path,
        run_config: dict[str, Any],
        progress: bool = True,
    ):
        self.model, self.data, self.config, self.objective = model, data, config, objective
        self.path, self.run_config, self.progress = checkpoint_path, run_config, progress
        self.device = next(model.parameters()).device
        if self.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        if config.compile:
            compile_parts(model)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.train_x = data.train.to(self.device)  # small sets live on the device: no loader
        self.reports: dict[int, StageReport] = {}

    def run(self, resume: bool = False) -> list[StageReport]:
        stages = self.model.combo.stages()
        start_stage, start_epoch, opt_state = stages[0], 0, None
        if resume and self.path.is_file():
            start_stage, start_epoch, opt_state = self._restore(checkpoint.load(self.path))
        for stage in stages:
            if stage < start_stage:
                continue
            epoch = start_epoch if stage == start_stage else 0
            self._train_stage(stage, epoch, opt_state if stage == start_stage else None)
        return [self.reports.setdefault(s, StageReport(s)) for s in stages]

    def _restore(self, payload: dict[str, Any]) -> tuple[int, int, dict | None]:
        if payload["canonical"] != self.model.combo.canonical:
            raise UsageError(
                f"--resume: {self.path} holds {payload['canonical']}, not {self.model.combo.canonical}; "
                f"use another --out or drop --resume"
            )
        self.model.load_state_dict(payload["model"])
        self.shuffle.set_state(payload["rng_shuffle"])
        torch.set_rng_state(payload["rng_torch"])
        for stage, report in payload["reports"].items():
            self.reports[int(stage)] = StageReport(int(stage), report["seconds"], report["images"])
        return payload["stage"], payload["epoch"], payload["optimizer"]

    def _save(self, stage: int, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        state = {
            "stage": stage,
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "rng_shuffle": self.shuffle.get_state(),
            "rng_torch": torch.get_rng_state(),
            "reports": {str(s): {"seconds": r.seconds, "images": r.images} for s, r in self.reports.items()},
        }
        checkpoint.save(self.path, self.model, run_config=self.run_config, state=state)

    def _train_stage(self, stage: int, start_epoch: int, opt_state: dict | None) -> None:
        model, cfg = self.model, self.config
        epochs = cfg.stage_epochs(stage)
        report = self.reports.setdefault(stage, StageReport(stage))
        optimizer = torch.optim.Adam(model.stage_parameters(stage), lr=cfg.lr)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
        if start_epoch >= epochs:
            return
        began = time.perf_counter()
        inputs = self.train_x if stage == 1 else self._codes()
        report.seconds += time.perf_counter() - began
        n, bs = inputs.shape[0], cfg.batch_size
        steps = math.ceil(n / bs)
        bar = tqdm(
            total=(epochs - start_epoch) * steps, desc=f"{model.combo.text} stage {stage}",
            disable=not self.progress, file=sys.stderr, leave=False, unit="step",
        )
        amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        for epoch in range(start_epoch, epochs):
            began = time.perf_counter()
            model.train(stage == 1)
            order = torch.randperm(n, generator=self.shuffle).to(self.device)
            totals: dict[str, torch.Tensor] = {}
            for i in range(steps):
                batch = inputs[order[i * bs:(i + 1) * bs]]
                with amp:
                    if stage == 1:
                        progress = (epoch * steps + i) / (epochs * steps)
                        x = self.data.to_model(batch, train=True)
                        loss, stats = training_loss(model, x, self.objective, progress)
                    else:
                        loss = -model.prior.log_prob(batch).mean()
                        stats = {"loss": loss.detach()}
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for key, value in stats.items():  # accumulated on the device: no sync per step
                    totals[key] = totals.get(key, 0) + value.float() * batch.shape[0]
                bar.update()
            means = {k: v.item() / n for k, v in totals.items()}  # one sync per epoch
            if not math.isfinite(means["loss"]):
                bar.close()
                raise TrainingDiverged(
                    f"loss became {means['loss']} in stage {stage}, epoch {epoch + 1}; the last good "
                    f"checkpoint is kept at {self.path}; lower --lr or check the data"
                )
            report.seconds += time.perf_counter() - began
            report.images += n
            report.stats = means
            bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()})
            self._save(stage, epoch + 1, optimizer)
        bar.close()

    @torch.no_grad()
    def _codes(self) -> torch.Tensor:
        """The frozen encoder's latents for the whole training split, computed once."""
        self.model.eval()
        chunks = []
        for i in range(0, self.train_x.shape[0], 512):
            x = self.data.to_model(self.train_x[i:i + 512], train=False)
            chunks.append(self.model.encoder(x).rsample(1)[0])
        return torch.cat(chunks)
