"""The MMD estimator against hand arithmetic and its expectation, and the InfoVAE and WAE-MMD
objectives against the ELBO and their own equations."""

import dataclasses
import math

import pytest
import torch

from vaereg.combo import resolve
from vaereg.model import VAE, Batch
from vaereg.specs import continuous, discrete
from vaereg_harness.run.trainer import update
from vaereg_objectives.elbo import ELBO, ELBOConfig
from vaereg_zoo.infovae import InfoVAE, InfoVAEConfig
from vaereg_zoo.mmd import kernel_matrix, mmd
from vaereg_zoo.wae import WAE, WAEConfig

X = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]
Y = [[1.0, 1.0], [2.0, 1.0], [0.0, -1.0]]
# squared distances, by hand: within X (0,1)=1 (0,2)=4 (1,2)=5; within Y (0,1)=1 (0,2)=5 (1,2)=8;
# X to Y, row i = x_i:
XY = [[2, 5, 1],
      [1, 2, 2],
      [2, 5, 9]]
SCALE = 2 * 2 * 1.0  # 2 D sigma^2 for N(0, I) in 2-D


def by_hand(k) -> float:
    """The unbiased MMD^2 with the kernel of a squared distance, over the hand distances: each
    3x3 within-sample matrix has 6 off-diagonal entries (each pair twice), the cross one 9."""
    within_x = 2 * (k(1) + k(4) + k(5)) / 6
    within_y = 2 * (k(1) + k(5) + k(8)) / 6
    cross = sum(k(d) for row in XY for d in row) / 9
    return within_x + within_y - 2 * cross


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


@pytest.mark.parametrize(("kernel", "k"), [
    ("rbf", lambda d: math.exp(-d / SCALE)),  # exp(-||a-b||^2 / (2 sigma_k^2)), 2 sigma_k^2 = 4
    ("imq", lambda d: SCALE / (SCALE + d)),  # C / (C + ||a-b||^2), C = 4
])
def test_mmd_matches_hand_arithmetic(kernel, k):
    x, y = torch.tensor(X, dtype=torch.float64), torch.tensor(Y, dtype=torch.float64)
    expected = by_hand(k)
    assert mmd(x, y, kernel).item() == pytest.approx(expected, abs=1e-12)
    assert mmd(x, y, kernel, scale=SCALE).item() == pytest.approx(expected, abs=1e-12)
    # the rbf value spelled out term by term once more, with the matrices written in full
    if kernel == "rbf":
        e = math.exp
        kxx = [[1, e(-1 / 4), e(-4 / 4)], [e(-1 / 4), 1, e(-5 / 4)], [e(-4 / 4), e(-5 / 4), 1]]
        kyy = [[1, e(-1 / 4), e(-5 / 4)], [e(-1 / 4), 1, e(-8 / 4)], [e(-5 / 4), e(-8 / 4), 1]]
        kxy = [[e(-2 / 4), e(-5 / 4), e(-1 / 4)], [e(-1 / 4), e(-2 / 4), e(-2 / 4)],
               [e(-2 / 4), e(-5 / 4), e(-9 / 4)]]
        off = [(i, j) for i in range(3) for j in range(3) if i != j]
        spelled = (sum(kxx[i][j] for i, j in off) / 6 + sum(kyy[i][j] for i, j in off) / 6
                   - 2 * sum(map(sum, kxy)) / 9)
        assert mmd(x, y, kernel).item() == pytest.approx(spelled, abs=1e-12)
        assert torch.allclose(kernel_matrix(x, y, kernel, SCALE), torch.tensor(kxy, dtype=torch.float64))


def test_mmd_needs_two_points_per_sample():
    with pytest.raises(ValueError, match="at least 2 points"):
        mmd(torch.zeros(1, 2), torch.zeros(3, 2), "rbf")


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_mmd_is_unbiased_and_separates_shifted_samples(kernel):
    g = torch.Generator().manual_seed(1)
    draws, n, dims = 3000, 5, 2

    def estimates(shift: float) -> torch.Tensor:
        return torch.stack([mmd(torch.randn(n, dims, generator=g, dtype=torch.float64),
                                torch.randn(n, dims, generator=g, dtype=torch.float64) + shift, kernel)
                            for _ in range(draws)])

    same = estimates(0.0)
    error = same.std() / math.sqrt(draws)
    assert abs(same.mean()) < 4 * error
    # the biased V-statistic (diagonal kept) on the same kind of samples is far from 0: the test can tell
    x, y = torch.randn(draws, n, dims, generator=g), torch.randn(draws, n, dims, generator=g)
    biased = torch.stack([kernel_matrix(a, a, kernel, SCALE).mean() + kernel_matrix(b, b, kernel, SCALE).mean()
                          - 2 * kernel_matrix(a, b, kernel, SCALE).mean() for a, b in zip(x, y, strict=True)])
    assert biased.mean() > 10 * error
    shifted = estimates(1.0)
    assert shifted.mean() > 10 * shifted.std() / math.sqrt(draws)


def _model_and_terms(digits, aux: float = 0.37):
    combo = resolve("gaussian", digits.spec)
    model = VAE(combo)
    x = digits.to_model(digits.test[:16], train=False)
    terms = model(Batch(x), 1)
    # a nonzero encoder loss, so leaving it out would show
    return combo, model, x, dataclasses.replace(terms, aux=torch.tensor(aux))


def test_infovae_with_zero_mmd_weight_is_the_elbo(digits):
    combo, _, _, terms = _model_and_terms(digits)
    elbo = ELBO(combo.data, combo.latent, ELBOConfig(), combo.closed_form_kl)
    info = InfoVAE(combo.data, combo.latent, InfoVAEConfig(alpha=0.0, lambda_=1.0), combo.closed_form_kl)
    expected, _ = elbo.loss(terms, 0.5)
    loss, stats = info.loss(terms, 0.5)
    assert torch.equal(loss, expected)
    assert stats["mmd"].isfinite() and stats["kl"] > 0


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_infovae_loss_is_its_equation(digits, kernel):
    combo, _, _, terms = _model_and_terms(digits)
    alpha, lambda_ = 0.25, 50.0
    info = InfoVAE(combo.data, combo.latent, InfoVAEConfig(alpha=alpha, lambda_=lambda_, kernel=kernel),
                   combo.closed_form_kl)
    torch.manual_seed(5)
    loss, stats = info.loss(terms, 0.5)
    torch.manual_seed(5)  # the same prior draws
    z = terms.z[0]
    divergence = mmd(z, torch.randn_like(z), kernel)
    kl = terms.kl.sum(1)
    expected = (-terms.log_px[0] + (1 - alpha) * kl).mean() + (alpha + lambda_ - 1) * divergence + terms.aux
    assert torch.allclose(loss, expected, rtol=1e-6, atol=0)
    assert torch.allclose(stats["mmd"], divergence)
    assert torch.allclose(stats["nll_x"], -terms.log_px[0].mean())


def test_wae_with_zero_weight_is_the_reconstruction_cost(digits):
    combo, _, _, terms = _model_and_terms(digits)
    wae = WAE(combo.data, combo.latent, WAEConfig(lambda_=0.0), combo.closed_form_kl)
    loss, stats = wae.loss(terms, 0.5)
    assert torch.equal(loss, -terms.log_px[0].mean() + terms.aux)
    assert stats["mmd"].isfinite()


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_wae_loss_is_its_equation(digits, kernel):
    combo, _, _, terms = _model_and_terms(digits)
    wae = WAE(combo.data, combo.latent, WAEConfig(kernel=kernel), combo.closed_form_kl)
    assert wae.config.lambda_ == 10.0 and WAEConfig().kernel == "imq"
    torch.manual_seed(7)
    loss, stats = wae.loss(terms, 0.5)
    torch.manual_seed(7)
    z = terms.z[0]
    divergence = mmd(z, torch.randn_like(z), kernel)
    assert torch.allclose(loss, -terms.log_px[0].mean() + 10.0 * divergence + terms.aux, rtol=1e-6, atol=0)
    assert set(stats) >= {"loss", "mmd", "nll_x"}


def test_a_batch_of_one_image_has_no_mmd(digits):
    combo, model, x, _ = _model_and_terms(digits)
    terms = model(Batch(x[:1]), 1)
    wae = WAE(combo.data, combo.latent, WAEConfig(), combo.closed_form_kl)
    loss, stats = wae.loss(terms, 0.5)
    assert stats["mmd"] == 0 and torch.equal(loss, -terms.log_px[0].mean() + terms.aux)


@pytest.mark.parametrize("objective_cls", [InfoVAE, WAE])
def test_mismatch_is_one_line_for_non_vector_latents(objective_cls):
    config = objective_cls.Config()
    assert objective_cls.mismatch(continuous(16), config, True) is None
    for latent in (discrete(8, 4, 4, 4), continuous(2, 4, 4)):
        reason = objective_cls.mismatch(latent, config, True)
        assert reason and "\n" not in reason and "continuous latent vector" in reason


@pytest.mark.parametrize(("objective_cls", "config"), [(InfoVAE, InfoVAEConfig()), (InfoVAE, InfoVAEConfig(alpha=1.0)),
                                                        (WAE, WAEConfig()), (WAE, WAEConfig(kernel="rbf"))])
def test_one_optimiser_step_gives_finite_stats(digits, objective_cls, config):
    combo, model, x, _ = _model_and_terms(digits)
    objective = objective_cls(combo.data, combo.latent, config, combo.closed_form_kl)
    steps = objective.steps(model, list(model.parameters()))
    before = [p.detach().clone() for p in model.parameters()]
    stats = update(steps, [torch.optim.Adam(s.parameters, lr=1e-3) for s in steps], model(Batch(x), objective.draws),
                   0.5)
    assert {"loss", "mmd", "nll_x"} <= set(stats)
    assert all(v.isfinite() for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
