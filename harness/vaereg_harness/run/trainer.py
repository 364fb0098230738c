"""The trainer: runs the declared stages in order (``vaereg_harness.run.stages``), each epoch
of a gradient stage one update of every optimiser its objective declares per batch. A
checkpoint is written after an epoch (every ``checkpoint_every`` seconds), after each stage's
last epoch and after a fit; ``--resume`` continues from it exactly.

Under torchrun every rank runs the same stages: each step's global batch is split among the
ranks, DDP averages the gradients of the stage's module, and rank 0 alone writes
(``vaereg_harness.launch.distributed``)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from vaereg import UsageError, VaeregError, collective
from vaereg.data import Dataset
from vaereg.model import VAE
from vaereg.objectives import Objective, Step, negative_elbo
from vaereg_harness.launch import distributed, signals, threads
from vaereg_harness.logs import Logger
from vaereg_harness.run import checkpoint
from vaereg_harness.run.config import TrainConfig
from vaereg_harness.run.stages import STAGES, AutoencoderStage, GradientStage

LATENT_CHUNK = 512  # training images encoded at a time for a prior trained after the autoencoder
VALIDATION_CHUNK = 512  # validation images scored at a time after each autoencoder epoch


class TrainingDiverged(VaeregError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class StageReport:
    stage: str
    seconds: float = 0.0
    images: int = 0


def update(steps: list[Step], optimizers: list[torch.optim.Optimizer], out: Any, progress: float,
           weight: float = 1.0, synced: bool = True) -> dict[str, Tensor]:
    """One update of every step from the forward output ``out``: each step's gradient is
    taken before any optimiser moves, so every loss sees the same parameters. ``synced``: DDP
    averages a single step's gradients over the ranks (else they are averaged here). Returns the
    stats, the first step's as they are and the others' prefixed by the step's name."""
    stats: dict[str, Tensor] = {}
    last = len(steps) - 1
    for s, (step, optimizer) in enumerate(zip(steps, optimizers, strict=True)):
        loss, step_stats = step.loss(out, progress)
        optimizer.zero_grad(set_to_none=True)
        if last == 0:
            (loss * weight).backward()  # weight 1 in one process
            if not synced:
                collective.average_gradients(step.parameters)
        else:
            (loss * weight).backward(inputs=step.parameters, retain_graph=s < last)
            collective.average_gradients(step.parameters)
        stats.update(step_stats if s == 0 else {f"{step.name}_{k}": v for k, v in step_stats.items()})
    for optimizer in optimizers:
        optimizer.step()
    return stats


class Trainer:
    """Runs every declared stage of ``model`` on ``data``, resuming from ``checkpoint_path`` if
    asked. ``forward`` is what computes the terms: the model, or its ``torch.compile`` wrapper."""

    def __init__(self, model: VAE, data: Dataset, config: TrainConfig, objective: Objective,
                 checkpoint_path: Path, progress: bool = True, loggers: list[Logger] | None = None):
        self.model, self.data, self.config, self.objective = model, data, config, objective
        self.path, self.progress, self.loggers = checkpoint_path, progress, loggers or []
        self.device = next(model.parameters()).device
        objective.to(self.device)
        objective.training_images = data.train.shape[0]
        if self.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        self.world = distributed.current()
        if self.world.size > 1:
            collective.sync_batchnorm(model)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.train_x = data.train.to(self.device)  # small sets live on the device: no loader
        self.train_labels = data.train_labels.to(self.device) if data.spec.classes else None
        self.validation_x = None if data.validation is None else data.validation.to(self.device)
        self.validation_labels = (data.validation_labels.to(self.device)
                                  if data.validation is not None and data.spec.classes else None)
        self.stages = [AutoencoderStage(self)]
        if model.combo.schedule != "joint":
            self.stages.append(STAGES[model.combo.schedule](self))
        self.reports = {stage.name: StageReport(stage.name) for stage in self.stages}
        self.saved_at = time.perf_counter()
        self.within: dict[str, Any] | None = None  # a resumed checkpoint's epoch in progress (``stop``)

    def run(self, resume: bool = False) -> list[StageReport]:
        start, epoch, opt_states = 0, 0, []
        if resume and self.path.is_file():
            start, epoch, opt_states = self._restore(checkpoint.load(self.path))
        elif resume:
            print(f"note: --resume: no checkpoint for these settings in {self.path.parent}; training from the start",
                  file=sys.stderr)
        try:
            for index, stage in enumerate(self.stages[start:], start):
                resumed = index == start
                stage.run(index, epoch if resumed else 0, opt_states if resumed else [])
        finally:
            for logger in self.loggers:
                logger.close()
        return list(self.reports.values())

    def log(self, record: dict) -> None:
        """Hand one record to every logger; pictures are drawn only if one asks, from a forked
        random stream, so logging never changes what training does."""
        def samples() -> Tensor:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                self.model.eval()
                classes = self.data.spec.classes
                labels = torch.arange(16, device=self.device) % classes if classes else None
                return self.model.sample(16, self.data.context(labels), mean=True).float().cpu()

        for logger in self.loggers:
            logger.log(record, samples)

    def _restore(self, payload: dict[str, Any]) -> tuple[int, int, dict | None]:
        if payload["canonical"] != self.model.combo.canonical:
            raise UsageError(
                f"--resume: {self.path} holds {payload['canonical']}, not {self.model.combo.canonical}; "
                f"use another --out or drop --resume"
            )
        checkpoint.load_weights(self.model, payload["model"], self.path)
        try:
            if payload.get("objective"):
                self.objective.load_state_dict(payload["objective"])
            self.shuffle.set_state(payload["rng_shuffle"])
            for name, report in payload["reports"].items():
                self.reports[name] = StageReport(name, float(report["seconds"]), int(report["images"]))
            optimizers = payload["optimizers"] if "optimizers" in payload else [payload["optimizer"]]  # format 2
            optimizers = [state for state in optimizers if state is not None]
            self.within = payload.get("within")
            return int(payload["stage"]), int(payload["epoch"]), optimizers
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise UsageError(f"--resume: {self.path} lacks the training state to continue from ({type(exc).__name__}: "
                             f"{str(exc)[:100]}); drop --resume to train from the start") from None

    def save(self, stage: int, epoch: int, optimizers: list[torch.optim.Optimizer],
             within: dict[str, Any] | None = None) -> None:
        """A checkpoint after ``epoch`` epochs of ``stage`` (and ``within`` the next one, when a
        signal stopped it part-way: the steps done, the order, the random state, the sums)."""
        state = {
            "stage": stage,
            "epoch": epoch,
            **({"within": within} if within else {}),
            "optimizers": [o.state_dict() for o in optimizers],
            "objective": self.objective.state_dict(),
            "rng_shuffle": self.shuffle.get_state(),
            "reports": {name: {"seconds": r.seconds, "images": r.images} for name, r in self.reports.items()},
        }
        if self.world.writer:
            checkpoint.save(self.path, self.model, state=state)
        where = f"epoch {epoch + 1}, step {within['step']}" if within else f"epoch {epoch}"
        by = ", written by rank 0" if self.world.size > 1 else ""
        signals.saved(f"the checkpoint {self.path} holds {self.stages[stage].name} training to {where} "
                      f"({time.strftime('%H:%M:%S')}{by})")
        self.saved_at = time.perf_counter()

    def stop(self, signum: int, index: int, epoch: int, optimizers: list[torch.optim.Optimizer], step: int,
             order: Tensor, totals: dict[str, Tensor], seconds: float) -> signals.Stopped:
        """Checkpoint an epoch a signal stopped after ``step`` steps, so ``--resume`` continues it
        bit for bit: the epoch's order, the random state after the step and the sums so far."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device).cpu()
        ranks = distributed.gathered(rng)  # each rank's own stream
        within = {"step": step, "order": order.cpu(), "rng": ranks if len(ranks) > 1 else rng, "seconds": seconds,
                  "totals": {k: v.detach().cpu() for k, v in totals.items()}}
        self.save(index, epoch, optimizers, within)
        return signals.Stopped(signum, signals.last_saved())

    def train_epochs(self, index: int, stage: GradientStage, start_epoch: int, opt_states: list[dict]) -> None:
        cfg = self.config
        epochs = stage.epochs(cfg)
        report = self.reports[stage.name]
        steps = stage.steps(stage.parameters())
        trained = [p for step in steps for p in step.parameters]
        for p in [*self.model.parameters(), *self.objective.parameters()]:  # a stage trains its own parameters
            p.requires_grad_(False)
        for p in trained:
            p.requires_grad_(True)
        # one optimiser over the module's own parameters: DDP syncs its gradients; several (an
        # adversarial objective), or one that also trains the objective's parameters (HVAE's step
        # sizes): their gradients are averaged over the ranks explicitly, a backward pass per step
        in_module = {id(p) for p in stage.module().parameters()}
        synced = len(steps) == 1 and all(id(p) in in_module for p in trained)
        net = distributed.wrap(stage.module()) if synced else stage.module()
        net = torch.compile(net) if cfg.compile else net
        # fused: one kernel per step for every parameter (CPU and CUDA); 1.5x the training
        # throughput of the per-tensor loop on the MLP VAE (benchmarks/RESULTS.md)
        fused = self.device.type in ("cpu", "cuda")
        optimizers = [torch.optim.Adam(step.parameters, lr=step.lr or cfg.lr, betas=step.betas, fused=fused)
                      for step in steps]
        for optimizer, state in zip(optimizers, opt_states, strict=False):
            optimizer.load_state_dict(state)
        if start_epoch >= epochs:
            return
        began = time.perf_counter()
        rows, labels = stage.inputs()
        report.seconds += time.perf_counter() - began
        n, bs = rows.shape[0], cfg.batch_size
        batches = math.ceil(n / bs)
        bar = tqdm(total=(epochs - start_epoch) * batches, desc=f"{self.model.combo.text} {stage.name}",
                   disable=not (self.progress and self.world.writer), file=sys.stderr, leave=False, unit="step")
        amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        # a signal waits for the step in flight (then the epoch so far is saved), or for the epoch's end
        with signals.held:
            for epoch in range(start_epoch, epochs):
                began = time.perf_counter()
                stage.train_mode()
                within, self.within = self.within, None
                if within is None:
                    torch.manual_seed(distributed.stream_seed(cfg.seed, "train", index, epoch, self.world.rank))
                    order = torch.randperm(n, generator=self.shuffle).to(self.device)  # the same on every rank
                    totals: dict[str, Tensor] = {}
                    first = 0
                else:  # resumed inside this epoch: where the signal stopped it
                    rng = self.rank_rng(within["rng"])
                    torch.set_rng_state(rng["cpu"])
                    if "cuda" in rng:
                        torch.cuda.set_rng_state(rng["cuda"], self.device)
                    order = within["order"].to(self.device)
                    totals = {k: v.to(self.device) for k, v in within["totals"].items()}
                    first, began = within["step"], began - within["seconds"]
                    bar.update(first)
                vote = distributed.StopVote()  # under torchrun every rank stops at the same step
                for i in range(first, batches):
                    idx, weight = self.my_part(order[i * bs:(i + 1) * bs])
                    progress = (epoch * batches + i) / (epochs * batches)
                    with amp:
                        out = stage.forward(net, rows[idx], None if labels is None else labels[idx])
                    stats = update(steps, optimizers, out, progress, weight, synced)
                    threads.tick()
                    for key, value in stats.items():  # accumulated on the device: no sync per step
                        totals[key] = totals.get(key, 0) + value.float() * idx.shape[0] * (weight > 0)
                    bar.update()
                    signum = vote.after_step(signals.pending())
                    if signum is not None:
                        bar.close()
                        raise self.stop(signum, index, epoch, optimizers, i + 1, order, totals,
                                        time.perf_counter() - began)
                names = sorted(totals)  # one sync per epoch (and one reduction over the ranks)
                sums = collective.all_sum(torch.stack([totals[k] for k in names]).double())
                means = dict(zip(names, (sums / n).tolist(), strict=True))
                weights_finite = bool(torch.stack([p.detach().isfinite().all() for p in trained]).all())
                if not math.isfinite(means["loss"]) or not weights_finite:
                    bar.close()
                    loss = means["loss"]
                    what = f"loss became {loss}" if not math.isfinite(loss) else "weights became non-finite"
                    kept = (f"the last good checkpoint is kept at {self.path}" if self.path.is_file()
                            else "no checkpoint was written")
                    raise TrainingDiverged(f"{what} in the {stage.name} stage, epoch {epoch + 1}; {kept}; "
                                           f"lower --lr or check the data")
                seconds = time.perf_counter() - began
                report.seconds += seconds
                report.images += n
                bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()})
                record = {"stage": stage.name, "epoch": epoch + 1, "step": (epoch + 1) * batches,
                          "images_per_s": n / seconds, "lr": optimizers[0].param_groups[0]["lr"], **means}
                if (isinstance(stage, AutoencoderStage) and self.validation_x is not None
                        and self.model.combo.no_density is None):
                    record["validation_elbo"] = self.validation_elbo(epoch + 1)
                    stage.train_mode()
                self.log(record)
                if epoch + 1 == epochs:
                    stage.finish()
                late = vote.finish(signals.pending())  # held since the last vote: stop once the epoch is saved
                due = epoch + 1 == epochs or time.perf_counter() - self.saved_at >= cfg.checkpoint_every
                if late is not None or due:
                    self.save(index, epoch + 1, optimizers)
                if late is not None:
                    bar.close()
                    raise signals.Stopped(late, signals.last_saved())
        bar.close()

    @torch.no_grad()
    def validation_elbo(self, epoch: int) -> float:
        """The mean negative ELBO per validation image (nats; lower is better) of the model after
        autoencoder epoch ``epoch`` (counted from 1): one posterior draw per image, reduced as the
        evaluator's test ELBO (``negative_elbo``), in eval mode on the stream ``(seed,
        "validation", epoch)``, so training's random state is untouched. Leaves the model in eval
        mode. Every rank scores every image, so every rank gets the same value."""
        self.model.eval()
        x, labels = self.validation_x, self.validation_labels
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        with distributed.seeded(self.config.seed, "validation", epoch):
            for c in range(0, x.shape[0], VALIDATION_CHUNK):
                part = None if labels is None else labels[c:c + VALIDATION_CHUNK]
                total += negative_elbo(self.model(self.data.batch(x[c:c + VALIDATION_CHUNK], part, train=False))).sum()
        return float(total) / x.shape[0]

    def rank_rng(self, saved: dict | list) -> dict:
        """This rank's random state in a checkpoint of an epoch stopped part-way: one state for
        one process, one per rank for several, so it resumes on as many ranks as it stopped."""
        states = saved if isinstance(saved, list) else [saved]
        if len(states) != self.world.size:
            raise UsageError(f"--resume: {self.path} stopped part-way through an epoch on {len(states)} process(es); "
                             f"resume it on {len(states)} (or drop --resume)")
        return states[self.world.rank]

    def my_part(self, batch: Tensor) -> tuple[Tensor, float]:
        """This rank's share of a global batch of indices, and the weight that makes the
        average over ranks DDP takes of the share's mean loss the global batch's mean loss.
        A rank left without images (a last batch smaller than the world) steps on one image
        with weight 0, so every rank joins the gradient all-reduce."""
        if self.world.size == 1:
            return batch, 1.0
        mine = batch[collective.my_share(batch.shape[0])]
        if mine.shape[0] == 0:
            return batch[:1], 0.0
        return mine, mine.shape[0] * self.world.size / batch.shape[0]

    @cached_property
    def latents(self) -> tuple[Tensor, Tensor | None]:
        """The frozen encoder's latents for the whole training split, as the prior asks for
        them (modes, or ``draws`` samples per image), with their labels; computed once. Under
        torchrun each rank encodes its share of the chunks and every rank gathers them all;
        each chunk draws from its own stream, so the latents do not depend on the world size."""
        self.model.eval()
        wanted = self.model.prior.prior_latents
        draws = 1 if wanted.source == "mode" else wanted.draws
        x, labels = self.train_x, self.train_labels
        starts = range(0, x.shape[0], LATENT_CHUNK)
        chunks = []
        with torch.no_grad():
            for c in starts[collective.my_share(len(starts))]:
                part = None if labels is None else labels[c:c + LATENT_CHUNK]
                with distributed.seeded(self.config.seed, "latents", c):
                    posterior = self.model.encode(self.data.batch(x[c:c + LATENT_CHUNK], part, train=False))
                    chunks.append(posterior.mode() if wanted.source == "mode"
                                  else posterior.rsample(draws).flatten(0, 1))
        latent = self.model.combo.latent
        mine = torch.cat(chunks) if chunks else torch.empty(
            0, *latent.shape, dtype=torch.long if latent.is_codes else torch.float32, device=self.device)
        if labels is not None:  # each chunk's labels once per draw, as the draws are laid out
            labels = torch.cat([labels[c:c + LATENT_CHUNK].repeat(draws) for c in starts])
        return collective.gather_rows(mine), labels

