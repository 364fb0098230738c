"""DIP-VAE: the covariance penalty against hand-computed values and numpy, the plain ELBO when the
penalty is off, the latents and posteriors it refuses, and one real optimiser step."""

import math

import numpy as np
import pytest
import torch

from vaereg import DiagonalGaussian, Posterior, UsageError, continuous, discrete
from vaereg.combo import resolve
from vaereg.model import VAE, Batch, Terms
from vaereg.objectives import build_objective
from vaereg.specs import hierarchy
from vaereg_harness.run.trainer import update
from vaereg_zoo.dipvae import DIPVAE, DIPVAEConfig

# 3 images, 2-D latent. Means [[1,0],[0,2],[2,1]]: batch mean [1,1], centred [[0,-1],[-1,1],[1,0]],
# so Cov_x[mu] = [[2/3, -1/3], [-1/3, 2/3]] (normalised by B = 3).
# Stds [[1,.5],[1,1],[1,.5]]: E_x[sigma^2] = [1, 1/2], so DIP-VAE-II's Cov = [[5/3, -1/3], [-1/3, 7/6]].
MEANS = torch.tensor([[1.0, 0.0], [0.0, 2.0], [2.0, 1.0]], dtype=torch.float64)
STDS = torch.tensor([[1.0, 0.5], [1.0, 1.0], [1.0, 0.5]], dtype=torch.float64)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


def hand_terms(posterior: Posterior, b: int = 3) -> Terms:
    """Terms whose ELBO part is 0 (log p(x|z) = 0, KL = 0, aux = 0): the loss is the penalty alone."""
    zeros = torch.zeros(1, b, dtype=torch.float64)
    return Terms(z=torch.zeros(1, b, 2, dtype=torch.float64), log_px=zeros, log_pz=zeros, log_qz=zeros,
                 kl=torch.zeros(b, 2, dtype=torch.float64), aux=torch.zeros((), dtype=torch.float64),
                 deterministic=False, stats={}, posterior=posterior, batch=Batch(torch.zeros(b, 1, 8, 8)))


def objective(latent=None, **options) -> DIPVAE:
    return DIPVAE(None, latent or continuous(2), DIPVAEConfig(**options), True)


@pytest.mark.parametrize(("kind", "options", "expected"), [
    # off-diagonal 2 * (1/3)^2 = 2/9; diagonal 2 * (2/3 - 1)^2 = 2/9; lambda_d = 10 * lambda_od (paper tie)
    ("i", {}, 10 * 2 / 9 + 100 * 2 / 9),
    ("i", {"lambda_od": 3.0, "lambda_d": 5.0}, 3 * 2 / 9 + 5 * 2 / 9),
    # off-diagonal 2/9; diagonal (5/3 - 1)^2 + (7/6 - 1)^2 = 4/9 + 1/36 = 17/36; lambda_d = lambda_od
    ("ii", {}, 10 * 2 / 9 + 10 * 17 / 36),
    ("ii", {"lambda_od": 3.0, "lambda_d": 5.0}, 3 * 2 / 9 + 5 * 17 / 36),
])
def test_penalty_matches_hand_computation(kind, options, expected):
    loss, stats = objective(type=kind, **options).loss(hand_terms(DiagonalGaussian(MEANS, STDS.log())), 0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert stats["dip_penalty"].item() == pytest.approx(expected, rel=1e-12)


def test_penalty_on_a_real_posterior_matches_numpy(digits):
    combo = resolve("gaussian", digits.spec)
    model = VAE(combo)
    terms = model(Batch(digits.to_model(digits.train[:32], train=True)), 1)
    for kind in ("i", "ii"):
        dip = DIPVAE(combo.data, combo.latent, DIPVAEConfig(type=kind, lambda_od=2.0, lambda_d=7.0), True)
        _, stats = dip.loss(terms, 0.0)
        mean = terms.posterior.mean.detach().double().numpy()
        cov = np.cov(mean, rowvar=False, bias=True)
        if kind == "ii":
            cov = cov + np.diag(np.exp(2 * terms.posterior.log_std.detach().double().numpy()).mean(0))
        off = (cov**2).sum() - (np.diag(cov) ** 2).sum()
        expected = 2.0 * off + 7.0 * ((np.diag(cov) - 1) ** 2).sum()
        assert stats["dip_penalty"].item() == pytest.approx(expected, rel=1e-5)


def test_without_penalty_it_is_the_elbo(digits):
    combo = resolve("gaussian", digits.spec)
    model = VAE(combo)
    terms = model(Batch(digits.to_model(digits.train[:16], train=True)), 1)
    elbo_loss, elbo_stats = build_objective(combo).loss(terms, 0.3)
    for kind in ("i", "ii"):
        dip = DIPVAE(combo.data, combo.latent, DIPVAEConfig(type=kind, lambda_od=0.0, lambda_d=0.0), True)
        loss, stats = dip.loss(terms, 0.3)
        assert torch.equal(loss, elbo_loss)
        assert torch.equal(stats["nelbo"], elbo_stats["nelbo"])


def test_refuses_latents_without_a_covariance():
    assert DIPVAE.mismatch(continuous(16), DIPVAEConfig(), True) is None
    for latent in (continuous(4, 2, 2), discrete(16, 4, 2, 2), hierarchy(continuous(4), continuous(2))):
        reason = DIPVAE.mismatch(latent, DIPVAEConfig(), True)
        assert reason is not None and "\n" not in reason and latent.describe() in reason


def test_refuses_a_posterior_without_means_and_variances():
    with pytest.raises(UsageError, match="DiagonalGaussian") as info:
        objective().loss(hand_terms(Posterior()), 0.0)
    assert "\n" not in str(info.value)


def test_one_optimiser_step_gives_finite_stats(digits):
    combo = resolve("gaussian", digits.spec)
    model = VAE(combo)
    dip = DIPVAE(combo.data, combo.latent, DIPVAEConfig(), combo.closed_form_kl)
    steps = dip.steps(model, list(model.parameters()))
    batch = Batch(digits.to_model(digits.train[:32], train=True))
    before = [p.detach().clone() for p in model.parameters()]
    stats = update(steps, [torch.optim.Adam(s.parameters, lr=1e-3) for s in steps], model(batch, dip.draws), 0.5)
    assert {"loss", "nelbo", "kl", "dip_penalty"} <= set(stats)
    assert all(math.isfinite(v.item()) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
