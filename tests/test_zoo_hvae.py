"""Hamiltonian VAE: the leapfrog integrator against the harmonic oscillator's closed form, volume
preservation and reversibility (autograd Jacobian), the tempered flow's Jacobian beta_0^{d/2}, the
ELBO on a linear-Gaussian model (log p(x) exactly under the exact posterior; an independent flow
with closed-form gradients; d ELBO / d epsilon against finite differences), the plain ELBO at K = 0
and epsilon = 0 on digits, refusals, and one real optimiser step."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch.autograd.functional import jacobian

from vaereg import Context, DiagonalGaussian, PointMass, StandardNormal, UsageError, continuous, discrete
from vaereg.combo import resolve
from vaereg.config import from_dict
from vaereg.model import VAE, Batch, Terms
from vaereg_harness.run.trainer import update
from vaereg_zoo.hvae import HVAE, HVAEConfig, hamiltonian_flow, sqrt_beta_schedule


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


@pytest.fixture(scope="module")
def combo(digits):
    return resolve("gaussian", digits.spec)


def quadratic(precision: torch.Tensor, centre: torch.Tensor):
    """U(z) = (z - c)^T A (z - c) / 2 per row."""
    return lambda z: 0.5 * ((z - centre) @ precision * (z - centre)).sum(1)


def toy_precision(d: int) -> torch.Tensor:
    g = torch.randn(d, d, dtype=torch.float64)
    return g @ g.T / d + torch.eye(d, dtype=torch.float64)


def flow_map(potential, step_size, steps, rescale=None):
    """(z_0, rho_0) -> (z_K, rho_K) for one latent, as one vector of 2d numbers."""
    def f(v):
        d = v.shape[0] // 2
        z, rho, _ = hamiltonian_flow(v[None, :d], v[None, d:], potential, step_size, steps, rescale)
        return torch.cat([z[0], rho[0]])
    return f


def test_schedule_is_quadratic_in_one_over_sqrt_beta():
    # beta_0 = 1/4: 1/sqrt(beta_k) = 2 - k^2/K^2; K = 3 gives sqrt(beta) = 1/2, 9/17, 9/14, 1
    got = sqrt_beta_schedule(torch.tensor(0.25, dtype=torch.float64), 3)
    assert torch.allclose(got, torch.tensor([0.5, 9 / 17, 9 / 14, 1.0], dtype=torch.float64), rtol=1e-14, atol=0)


def test_one_leapfrog_step_of_the_harmonic_oscillator():
    # U = z^2 / 2: one leapfrog step is the matrix [[1 - e^2/2, e], [-e (1 - e^2/4), 1 - e^2/2]]
    e = 0.3
    f64 = torch.float64
    z, rho, u = hamiltonian_flow(torch.tensor([[0.7]], dtype=f64), torch.tensor([[-1.1]], dtype=f64),
                                 lambda z: 0.5 * z.square().sum(1), torch.tensor([e], dtype=f64), 1)
    step = torch.tensor([[1 - e * e / 2, e], [-e * (1 - e * e / 4), 1 - e * e / 2]], dtype=f64)
    expected = step @ torch.tensor([0.7, -1.1], dtype=f64)
    assert torch.allclose(torch.cat([z[0], rho[0]]), expected, rtol=1e-14, atol=1e-15)
    assert torch.allclose(u, 0.5 * z.square().sum(1), rtol=1e-14, atol=0)


def test_leapfrog_preserves_volume():
    d = 4
    potential = quadratic(toy_precision(d), torch.randn(d, dtype=torch.float64))
    step_size = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    v = torch.randn(2 * d, dtype=torch.float64)
    jac = jacobian(flow_map(potential, step_size, 6), v)
    assert not torch.allclose(jac, torch.eye(2 * d, dtype=torch.float64), atol=1e-2)  # the flow does move
    assert torch.linalg.det(jac).abs().item() == pytest.approx(1.0, abs=1e-10)


def test_leapfrog_is_reversible():
    d = 5
    potential = quadratic(toy_precision(d), torch.randn(d, dtype=torch.float64))
    step_size = torch.full((d,), 0.25, dtype=torch.float64)
    z_0, rho_0 = torch.randn(3, d, dtype=torch.float64), torch.randn(3, d, dtype=torch.float64)
    z_k, rho_k, _ = hamiltonian_flow(z_0, rho_0, potential, step_size, 7)
    assert (z_k - z_0).abs().max() > 0.1
    z_back, rho_back, _ = hamiltonian_flow(z_k, -rho_k, potential, step_size, 7)
    assert torch.allclose(z_back, z_0, rtol=0, atol=1e-5)
    assert torch.allclose(-rho_back, rho_0, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("beta_0", "steps"), [(0.3, 1), (2 / 3, 4), (0.05, 6)])
def test_tempered_flow_jacobian_is_beta_0_to_the_half_d(beta_0, steps):
    d = 3
    potential = quadratic(toy_precision(d), torch.randn(d, dtype=torch.float64))
    sqrt_beta = sqrt_beta_schedule(torch.tensor(beta_0, dtype=torch.float64), steps)
    rescale = sqrt_beta[:-1] / sqrt_beta[1:]
    assert torch.prod(rescale).item() == pytest.approx(math.sqrt(beta_0), rel=1e-12)
    step_size = torch.tensor([0.2, 0.1, 0.3], dtype=torch.float64)
    jac = jacobian(flow_map(potential, step_size, steps, rescale), torch.randn(2 * d, dtype=torch.float64))
    assert torch.linalg.det(jac).abs().item() == pytest.approx(beta_0 ** (d / 2), rel=1e-10)


class LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I) with W^T W diagonal, so the exact posterior
    N(S W^T (x - b) / s^2, S), S = (I + W^T W / s^2)^-1, is a diagonal Gaussian."""

    def __init__(self, d: int = 3, n: int = 6, s: float = 0.5):
        q, _ = torch.linalg.qr(torch.randn(n, d, dtype=torch.float64))
        self.w = q * torch.tensor([2.0, 0.7, 1.3], dtype=torch.float64)[:d]
        self.b, self.s, self.d = torch.randn(n, dtype=torch.float64), s, d
        self.model = SimpleNamespace(decoder=lambda z, context: z @ self.w.T + self.b, likelihood=self,
                                     active_prior=StandardNormal(None, continuous(d), None))

    def log_prob(self, x, params, context):
        return torch.distributions.Normal(params, self.s).log_prob(x).sum(1)

    def log_marginal(self, x):
        cov = self.w @ self.w.T + self.s ** 2 * torch.eye(len(self.b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def exact_posterior(self, x) -> DiagonalGaussian:
        var = 1 / (1 + (self.w ** 2).sum(0) / self.s ** 2)
        mean = (x - self.b) @ self.w / self.s ** 2 * var
        return DiagonalGaussian(mean, 0.5 * var.log().expand_as(mean))

    def grad_potential(self, x, z):
        """dU/dz in closed form: -W^T (x - W z - b) / s^2 + z."""
        return -(x - z @ self.w.T - self.b) @ self.w / self.s ** 2 + z

    def terms(self, x, posterior) -> Terms:
        z = posterior.rsample(1)
        zeros = torch.zeros(1, x.shape[0], dtype=torch.float64)
        return Terms(z=z, log_px=zeros, log_pz=zeros, log_qz=posterior.log_prob(z), kl=None, aux=torch.zeros(()),
                     deterministic=False, stats={}, posterior=posterior, batch=Batch(x, Context()), model=self.model)


def bound_objective(toy: LinearGaussian, config: HVAEConfig) -> HVAE:
    return HVAE(None, continuous(toy.d), config, True).double()


def test_elbo_is_log_marginal_under_the_exact_posterior():
    toy = LinearGaussian()
    x = torch.randn(4, 6, dtype=torch.float64)
    hvae = bound_objective(toy, HVAEConfig(leapfrog=0, tempering=False))
    posterior = toy.exact_posterior(x)
    for _ in range(3):  # zero variance: every draw gives log p(x)
        elbo = hvae.elbo(toy.terms(x, posterior))
        assert torch.allclose(elbo, toy.log_marginal(x), rtol=1e-12, atol=0)


@pytest.mark.parametrize("tempering", [False, True])
def test_elbo_matches_an_independent_flow(tempering):
    # the objective's estimate against Algorithms 1 and 2 written out with closed-form gradients
    toy, steps, beta_0, eps = LinearGaussian(), 4, 0.4, torch.tensor([0.3, 0.1, 0.2], dtype=torch.float64)
    x = torch.randn(5, 6, dtype=torch.float64)
    hvae = bound_objective(toy, HVAEConfig(leapfrog=steps, tempering=tempering, beta_0=beta_0))
    with torch.no_grad():
        hvae.step_logit.copy_(torch.logit(eps / 0.5))
        if tempering:  # beta_0 to float64 precision: the parameter was made in float32
            hvae.beta_logit.copy_(torch.logit(torch.tensor(beta_0, dtype=torch.float64)))
    posterior = DiagonalGaussian(torch.randn(5, 3, dtype=torch.float64), 0.3 * torch.randn(5, 3, dtype=torch.float64))
    terms = toy.terms(x, posterior)
    torch.manual_seed(7)
    elbo = hvae.elbo(terms)
    torch.manual_seed(7)
    gamma = torch.randn(5, 3, dtype=torch.float64)

    def sqrt_beta(k):
        return 1 / ((1 - 1 / math.sqrt(beta_0)) * k * k / steps ** 2 + 1 / math.sqrt(beta_0)) if tempering else 1.0

    z, rho = terms.z[0].detach(), gamma / sqrt_beta(0)
    for k in range(1, steps + 1):
        rho = rho - eps / 2 * toy.grad_potential(x, z)
        z = z + eps * rho
        rho = (rho - eps / 2 * toy.grad_potential(x, z)) * sqrt_beta(k - 1) / sqrt_beta(k)
    normal = torch.distributions.Normal(0.0, 1.0)
    log_joint = toy.log_prob(x, z @ toy.w.T + toy.b, None) + normal.log_prob(z).sum(1)
    expected = log_joint + normal.log_prob(rho).sum(1) - posterior.log_prob(terms.z)[0] - normal.log_prob(gamma).sum(1)
    assert torch.allclose(elbo, expected, rtol=1e-12, atol=1e-12)


def test_step_size_gradient_matches_finite_differences():
    # d ELBO / d epsilon runs through grad U at every z_k: it needs the leapfrog's create_graph
    toy = LinearGaussian()
    x = torch.randn(3, 6, dtype=torch.float64)
    hvae = bound_objective(toy, HVAEConfig(leapfrog=3, tempering=True))
    posterior = DiagonalGaussian(torch.randn(3, 3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64))
    terms = toy.terms(x, posterior)

    def elbo_sum():
        torch.manual_seed(3)
        return hvae.elbo(terms).sum()

    (grad,) = torch.autograd.grad(elbo_sum(), hvae.step_logit)
    h = 1e-6
    for i in range(3):
        with torch.no_grad():
            hvae.step_logit[i] += h
            up = elbo_sum()
            hvae.step_logit[i] -= 2 * h
            down = elbo_sum()
            hvae.step_logit[i] += h
        assert grad[i].item() == pytest.approx(((up - down) / (2 * h)).item(), rel=1e-6, abs=1e-8)
    assert grad.abs().min() > 1e-4


def digits_terms(model, digits, n=16) -> Terms:
    return model(Batch(digits.to_model(digits.train[:n], train=True)), 1)


def mc_negative_elbo(terms: Terms) -> torch.Tensor:
    return -(terms.log_px[0] + terms.log_pz[0] - terms.log_qz[0]).mean() + terms.aux


@pytest.mark.parametrize("zero", ["leapfrog", "step_size"])
def test_no_flow_is_the_plain_elbo(combo, digits, zero):
    model = VAE(combo)
    config = HVAEConfig(leapfrog=0 if zero == "leapfrog" else 5, tempering=False)
    hvae = HVAE(combo.data, combo.latent, config, combo.closed_form_kl)
    if zero == "step_size":
        with torch.no_grad():
            hvae.step_logit.fill_(-math.inf)  # epsilon = 0
    terms = digits_terms(model, digits)
    loss, stats = hvae.loss(terms, 0.3)
    assert torch.allclose(loss, mc_negative_elbo(terms), rtol=1e-6, atol=0)
    assert stats["hvae_nelbo"].item() == pytest.approx(loss.item(), rel=1e-6)


def test_the_flow_changes_the_estimate(combo, digits):
    model = VAE(combo)
    hvae = HVAE(combo.data, combo.latent, HVAEConfig(), combo.closed_form_kl)
    terms = digits_terms(model, digits)
    loss, stats = hvae.loss(terms, 0.0)
    assert math.isfinite(loss.item())
    assert abs(loss.item() - mc_negative_elbo(terms).item()) > 1e-3
    assert stats["step_size"].item() == pytest.approx(0.2, rel=1e-6)
    assert stats["beta_0"].item() == pytest.approx(2 / 3, rel=1e-6)


def test_refusals():
    assert HVAE.mismatch(continuous(16), HVAEConfig(), True) is None
    assert "continuous latent vector" in HVAE.mismatch(continuous(4, 2, 2), HVAEConfig(), True)
    assert "continuous latent vector" in HVAE.mismatch(discrete(32, 8, 2, 2), HVAEConfig(), True)
    assert HVAE.encoder_mismatch(DiagonalGaussian) is None
    assert "PointMass" in HVAE.encoder_mismatch(PointMass)


@pytest.mark.parametrize(("options", "match"), [({"step_size": 0.6}, "max_step_size"),
                                                 ({"leapfrog": 0}, "leapfrog >= 1"),
                                                 ({"beta_0": 1.0}, "tempering=false")])
def test_refuses_bad_options(options, match):
    with pytest.raises(UsageError, match=match):
        from_dict(HVAEConfig, options, what="objective hvae")


def test_loss_needs_the_model_that_computed_the_terms(combo, digits):
    hvae = HVAE(combo.data, combo.latent, HVAEConfig(), combo.closed_form_kl)
    terms = digits_terms(VAE(combo), digits)
    terms.model = None
    with pytest.raises(UsageError, match=r"terms.model"):
        hvae.loss(terms, 0.0)


def test_one_optimiser_step_moves_epsilon_and_beta_0(combo, digits):
    model = VAE(combo)
    hvae = HVAE(combo.data, combo.latent, HVAEConfig(), combo.closed_form_kl)
    steps = hvae.steps(model, list(model.parameters()))
    assert len(steps) == 1
    assert {id(p) for p in hvae.parameters()} <= {id(p) for p in steps[0].parameters}
    assert {"step_logit", "beta_logit"} <= set(hvae.state_dict())
    batch = Batch(digits.to_model(digits.train[:32], train=True))
    before = [p.detach().clone() for p in model.parameters()]
    step_size, beta_0 = hvae.step_size.detach().clone(), hvae.beta_0.detach().clone()
    stats = update(steps, [torch.optim.Adam(s.parameters, lr=1e-3) for s in steps], model(batch, hvae.draws), 0.5)
    assert {"loss", "hvae_nelbo", "step_size", "beta_0"} <= set(stats)
    assert all(math.isfinite(v.item()) for v in stats.values())
    assert (hvae.step_size.detach() != step_size).all()
    assert hvae.beta_0.detach() != beta_0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
