"""Training speed: one step per built-in combo, and the harness's training loop against a
bare PyTorch loop on the same model, data and batch size (a ratio measured in one run)."""

from __future__ import annotations

import time

import pytest
import torch

from benchmarks.conftest import report
from vaereg import Context
from vaereg.combo import resolve
from vaereg.model import VAE, Batch
from vaereg.objectives import ObjectiveConfig, training_loss
from vaereg_harness.api import RunConfig, train_model
from vaereg_harness.train import TrainConfig

BATCH = 64
COMBOS = ["gaussian", "gaussian-mlp", "gaussian+pixelcnn", "vq", "vq+pixelcnn", "vq2", "vq2+pixelcnn",
          "hierarchical", "nvae", "gaussian+prior=vamp", "gaussian+prior=mog", "gaussian+prior=flow",
          "gaussian+encoder=iaf"]
HARNESS_OVER_BARE_BOUND = 1.5  # CI fails past this; the target is 1 / 0.9


@pytest.mark.parametrize("combo", COMBOS)
def test_training_step(benchmark, digits, combo):
    """Stage 1 step (encoder, decoder, likelihood, and a stage-1 prior) at batch 64."""
    model = VAE(resolve(combo, digits.spec)).train()
    optimizer = torch.optim.Adam(model.fitted_parameters(prior=False), lr=1e-3)
    batch = Batch(digits.to_model(digits.train[:BATCH], train=True))
    objective = ObjectiveConfig(**model.combo.objective_defaults())

    def step():
        loss, _ = training_loss(model(batch), objective, 0.5, model.combo.latent)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    benchmark.pedantic(step, rounds=10, warmup_rounds=2, iterations=1)
    report(benchmark, BATCH)


def bare_loop(model: VAE, x_all: torch.Tensor, epochs: int) -> None:
    """The loop anyone would write by hand: reparameterised draw, decoder, likelihood, closed-
    form KL, Adam. No harness code at all."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    none = Context()
    for _ in range(epochs):
        for idx in torch.randperm(x_all.shape[0]).split(BATCH):
            x = x_all[idx]
            q = model.encoder(x, none)
            params = model.decoder(q.rsample(1)[0], none)
            kl = 0.5 * (q.mean.square() + torch.exp(2 * q.log_std) - 1) - q.log_std
            loss = (kl.sum(1) - model.likelihood.log_prob(x, params, none)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


@pytest.mark.parametrize("combo", ["gaussian-mlp", "gaussian"])
def test_harness_against_bare_loop(benchmark, digits, short, tmp_path, combo):
    """Whole epochs through ``vaereg_harness`` (checkpoint per epoch included) against the bare
    loop on an identically built model; rounds alternate, the fastest of each is compared."""
    epochs = 2 if short else 5
    config = RunConfig(train=TrainConfig(epochs=epochs, batch_size=BATCH, seed=0, device="cpu"))
    x_all = digits.to_model(digits.train, train=False)
    bare_seconds: list[float] = []

    def setup():  # untimed by pytest-benchmark: the bare loop, timed here
        model = VAE(resolve(combo, digits.spec))
        began = time.perf_counter()
        bare_loop(model, x_all, epochs)
        bare_seconds.append(time.perf_counter() - began)
        return (VAE(resolve(combo, digits.spec)),), {}

    def harness(model):
        train_model(model, digits, config, tmp_path / str(len(bare_seconds)), resume=False, progress=False)

    benchmark.pedantic(harness, setup=setup, rounds=3 if short else 5, iterations=1)
    ratio = benchmark.stats.stats.min / min(bare_seconds)
    report(benchmark, epochs * digits.train.shape[0], harness_over_bare=ratio,
           bare_images_per_s=epochs * digits.train.shape[0] / min(bare_seconds))
    assert ratio <= HARNESS_OVER_BARE_BOUND, f"harness/bare time {ratio:.2f} > {HARNESS_OVER_BARE_BOUND}"
