"""Deterministic autoencoders (AE, RAE-L2, RAE-GP): the point-mass encoder, the losses against
hand computations and autograd's Jacobian, and the null NLL with its reason."""

import pytest
import torch

from vaereg import PointMass
from vaereg.combo import resolve
from vaereg.conformance import nll_check
from vaereg.model import VAE, Batch
from vaereg.objectives import build_objective
from vaereg_harness.metrics.passes import evaluation_pass
from vaereg_harness.run.trainer import update
from vaereg_zoo.rae import jacobian_projection


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


def batch(digits, n=8) -> Batch:
    return Batch(digits.to_model(digits.train[:n], train=True))


def test_the_deterministic_encoder_is_a_point_mass(digits):
    model = VAE(resolve("ae", digits.spec))
    terms = model(batch(digits), 3)
    assert isinstance(terms.posterior, PointMass) and terms.deterministic
    assert torch.equal(terms.z[0], terms.z[2])  # every draw is f(x)
    assert torch.equal(terms.log_qz, torch.zeros(3, 8)) and terms.kl is None


def test_autoencoder_loss_is_the_reconstruction(digits):
    model = VAE(resolve("ae", digits.spec))
    terms = model(batch(digits), 1)
    loss, stats = build_objective(model.combo).loss(terms, 0.0)
    assert loss.item() == pytest.approx(-terms.log_px[0].mean().item(), rel=1e-6)
    assert stats["nll_x"].item() == pytest.approx(loss.item(), rel=1e-6)


def test_rae_l2_adds_the_latent_energy_and_the_decoders_weight_norm(digits):
    combo = resolve("rae", digits.spec, options={"objective": {"beta": 0.5, "lambda_": 0.25}})
    model = VAE(combo)
    terms = model(batch(digits), 1)
    loss, _ = build_objective(combo).loss(terms, 0.0)
    energy = 0.5 * terms.z[0].square().sum(1).mean()
    weights = sum(p.square().sum() for p in model.decoder.parameters())
    expected = -terms.log_px[0].mean() + 0.5 * energy + 0.25 * weights
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradient_penalty_summed_over_a_basis_is_the_jacobians_frobenius_norm():
    torch.manual_seed(1)
    layer = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4)).double()
    z = torch.randn(2, 3, dtype=torch.float64)
    total = sum(jacobian_projection(layer, z, torch.eye(4, dtype=torch.float64)[i].expand(2, 4)) for i in range(4))
    for row in range(2):
        jacobian = torch.autograd.functional.jacobian(layer, z[row])
        assert total[row].item() == pytest.approx(jacobian.square().sum().item(), rel=1e-10)
    # and a Gaussian direction estimates it without bias
    draws = torch.stack([jacobian_projection(layer, z, torch.randn(2, 4, dtype=torch.float64)) for _ in range(4000)])
    mean, error = draws.mean(0), draws.std(0) / 4000 ** 0.5
    assert ((mean - total).abs() < 4 * error).all()


def test_rae_gp_penalises_the_decoders_jacobian_and_trains_it(digits):
    combo = resolve("rae", digits.spec, options={"objective": {"regulariser": "gp", "lambda_": 1.0}})
    model = VAE(combo)
    objective = build_objective(combo)
    terms = model(batch(digits, 4), 1)
    _, stats = objective.loss(terms, 0.0)
    assert stats["gp_penalty"].item() > 0
    steps = objective.steps(model, list(model.parameters()))
    before = [p.detach().clone() for p in model.decoder.parameters()]
    stats = update(steps, [torch.optim.SGD(s.parameters, lr=1e-3) for s in steps], model(batch(digits, 4), 1), 0.5)
    assert all(torch.isfinite(v) for v in stats.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.decoder.parameters(), strict=True))


@pytest.mark.parametrize("preset", ["ae", "rae", "wae"])
def test_a_deterministic_continuous_model_reports_no_nll_and_says_why(digits, preset):
    combo = resolve(preset, digits.spec)
    assert "deterministic encoder into a continuous latent" in combo.no_density
    evaluation = evaluation_pass(VAE(combo), digits.test_subset(16), 4, progress=False)
    assert evaluation.nll is None and evaluation.nelbo is None and evaluation.nll_nats is None
    assert evaluation.no_density == combo.no_density
    assert "no NLL" in nll_check(VAE(combo), digits)


def test_vq_keeps_its_point_mass_bound(digits):
    assert resolve("vq", digits.spec).no_density is None  # a point mass over codes has probability 1
