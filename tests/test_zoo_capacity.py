"""Controlled capacity increase: the capacity schedule, the loss against its formula on hand-built
and real terms, the plain ELBO at gamma = 1 and C = 0, and one real optimiser step."""

import math

import pytest
import torch

from vaereg import DiagonalGaussian, UsageError, continuous
from vaereg.combo import resolve
from vaereg.config import from_dict
from vaereg.model import VAE, Batch, Terms
from vaereg.objectives import build_objective
from vaereg_harness.run.trainer import update
from vaereg_zoo.capacity import Capacity, CapacityConfig


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


@pytest.fixture(scope="module")
def combo(digits):
    return resolve("gaussian", digits.spec)


def real_terms(combo, digits, n=16) -> Terms:
    return VAE(combo)(Batch(digits.to_model(digits.train[:n], train=True)), 1)


@pytest.mark.parametrize(("ramp", "c_min", "c_max"), [(1.0, 0.0, 25.0), (0.5, 2.0, 10.0), (0.2, 1.0, 6.0)])
def test_capacity_follows_the_schedule(ramp, c_min, c_max):
    config = CapacityConfig(c_min=c_min, c_max=c_max, ramp=ramp)
    assert config.capacity(0.0) == c_min
    assert config.capacity(ramp / 2) == c_min + (c_max - c_min) / 2
    assert config.capacity(ramp) == c_max
    assert config.capacity(1.0) == c_max


def test_loss_on_hand_built_terms():
    # KL per image [3, 5] (mean 4) below C = 6 at progress 0.5, then above C = 2 at progress 0.
    kl = torch.tensor([[1.0, 2.0], [2.0, 3.0]])
    log_px = torch.tensor([[-10.0, -20.0]])
    zeros = torch.zeros(1, 2)
    terms = Terms(z=torch.zeros(1, 2, 2), log_px=log_px, log_pz=zeros, log_qz=zeros, kl=kl,
                  aux=torch.tensor(0.25), deterministic=False, stats={},
                  posterior=DiagonalGaussian(torch.zeros(2, 2), torch.zeros(2, 2)),
                  batch=Batch(torch.zeros(2, 1, 8, 8)))
    capacity = Capacity(None, continuous(2), CapacityConfig(gamma=3.0, c_min=2.0, c_max=10.0), True)
    loss, stats = capacity.loss(terms, 0.5)
    assert loss.item() == 15.0 + 3.0 * 2.0 + 0.25
    assert (stats["kl"].item(), stats["capacity"].item()) == (4.0, 6.0)
    loss, stats = capacity.loss(terms, 0.0)
    assert loss.item() == 15.0 + 3.0 * 2.0 + 0.25
    assert stats["capacity"].item() == 2.0


@pytest.mark.parametrize("progress", [0.0, 0.1, 0.6, 1.0])
def test_loss_on_real_terms(combo, digits, progress):
    terms = real_terms(combo, digits)
    config = CapacityConfig(gamma=50.0, c_min=1.0, c_max=30.0, ramp=0.5)
    loss, stats = Capacity(combo.data, combo.latent, config, True).loss(terms, progress)
    c = 1.0 + 29.0 * min(1.0, progress / 0.5)
    kl = terms.kl.flatten(1).sum(1)
    expected = -terms.log_px[0].mean() + 50.0 * (kl.mean() - c).abs() + terms.aux
    assert torch.allclose(loss, expected, rtol=1e-6, atol=0)
    assert stats["capacity"].item() == pytest.approx(c)
    assert stats["kl"].item() == pytest.approx(kl.mean().item(), rel=1e-6)


def test_gamma_one_at_zero_capacity_is_the_elbo(combo, digits):
    terms = real_terms(combo, digits)
    elbo_loss, _ = build_objective(combo).loss(terms, 0.0)
    config = CapacityConfig(gamma=1.0, c_min=0.0, c_max=0.0)
    loss, _ = Capacity(combo.data, combo.latent, config, True).loss(terms, 0.7)
    assert torch.allclose(loss, elbo_loss, rtol=1e-6, atol=0)


def test_refuses_a_falling_capacity():
    with pytest.raises(UsageError, match="c_min"):
        from_dict(CapacityConfig, {"c_min": 5.0, "c_max": 1.0}, what="objective capacity")


def test_one_optimiser_step_gives_finite_stats(combo, digits):
    model = VAE(combo)
    capacity = Capacity(combo.data, combo.latent, CapacityConfig(), combo.closed_form_kl)
    steps = capacity.steps(model, list(model.parameters()))
    batch = Batch(digits.to_model(digits.train[:32], train=True))
    before = [p.detach().clone() for p in model.parameters()]
    stats = update(steps, [torch.optim.Adam(s.parameters, lr=1e-3) for s in steps],
                   model(batch, capacity.draws), 0.5)
    assert {"loss", "kl", "capacity"} <= set(stats)
    assert all(math.isfinite(v.item()) for v in stats.values())
    assert stats["capacity"].item() == 12.5
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
