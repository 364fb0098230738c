"""Training speed: one step per built-in combo (the harness against a bare loop in a fresh
process is in ``test_fresh_process.py``)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.conftest import report
from vaereg.combo import resolve
from vaereg.model import VAE, Batch
from vaereg.objectives import build_objective

BATCH = 64
COMBOS = ["gaussian", "gaussian-mlp", "gaussian+pixelcnn", "vq", "vq+pixelcnn", "vq2", "vq2+pixelcnn",
          "hierarchical", "nvae", "gaussian+prior=vamp", "gaussian+prior=mog", "gaussian+prior=flow",
          "gaussian+encoder=iaf"]


@pytest.mark.parametrize("combo", COMBOS)
def test_training_step(benchmark, digits, combo):
    """Stage 1 step (encoder, decoder, likelihood, and a stage-1 prior) at batch 64."""
    model = VAE(resolve(combo, digits.spec)).train()
    optimizer = torch.optim.Adam(model.stage_parameters(prior=False), lr=1e-3)
    batch = Batch(digits.to_model(digits.train[:BATCH], train=True))
    objective = build_objective(model.combo)

    def step():
        loss, _ = objective.loss(model(batch, objective.draws), 0.5)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    benchmark.pedantic(step, rounds=10, warmup_rounds=2, iterations=1)
    report(benchmark, BATCH)
