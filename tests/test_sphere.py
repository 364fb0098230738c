"""The hyperspherical latent (Davidson et al. 2018) against exact references: the vMF log-normaliser
and entropy against scipy, the Bessel gradient against finite differences, the closed-form KL to the
uniform prior against Monte Carlo, the sampler's mean resultant length and the exact CDF of mu.z, the
rejection sampler's corrected gradient against dA_m/dkappa, and the svae preset training on digits."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import ive

from vaereg import UsageError, continuous
from vaereg.combo import resolve
from vaereg.model import VAE, Batch
from vaereg.objectives import build_objective, kl_per_image
from vaereg_sphere.bessel import bessel_ratio, log_bessel
from vaereg_sphere.uniform import UniformSphere, log_sphere_area, vmf_to_uniform_kl
from vaereg_sphere.vmf import VonMisesFisher, log_normaliser

CASES = [(m, kappa) for m in (2, 3, 10, 64) for kappa in (0.5, 5.0, 50.0, 500.0)]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


def vmf(m: int, kappa: float, n: int = 1, seed: int = 0) -> VonMisesFisher:
    """``n`` vMFs in R^m with random unit mean directions and one concentration, in float64."""
    mu = torch.randn(n, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return VonMisesFisher(mu / mu.norm(dim=-1, keepdim=True), torch.full((n,), kappa, dtype=torch.float64))


def mean_resultant(m: int, kappa: float) -> float:
    """A_m(kappa) = I_{m/2}(kappa) / I_{m/2-1}(kappa) from scipy."""
    return float(ive(m / 2, kappa) / ive(m / 2 - 1, kappa))


@pytest.mark.parametrize(("m", "kappa"), CASES)
def test_log_normaliser_and_entropy_match_scipy(m, kappa):
    q = vmf(m, kappa)
    reference = stats.vonmises_fisher(q.mu[0].numpy(), kappa)
    z = torch.as_tensor(reference.rvs(5, random_state=1))
    expected = reference.logpdf(z.numpy())
    assert np.allclose(q.log_prob(z[:, None]).squeeze(1).numpy(), expected, rtol=1e-12, atol=1e-9)
    entropy = -(kappa * mean_resultant(m, kappa) + log_normaliser(m, q.kappa).item())
    assert entropy == pytest.approx(float(reference.entropy()), rel=1e-10, abs=1e-9)


@pytest.mark.parametrize("v", [0.0, 0.5, 4.0, 31.0])
@pytest.mark.parametrize("kappa", [0.3, 2.0, 50.0, 500.0])
def test_log_bessel_value_and_gradient(v, kappa):
    x = torch.tensor(kappa, dtype=torch.float64, requires_grad=True)
    value = log_bessel(v, x)
    assert value.item() == pytest.approx(math.log(ive(v, kappa)) + kappa, rel=1e-14)
    (grad,) = torch.autograd.grad(value, x)
    h = 1e-6 * kappa
    finite = (math.log(ive(v, kappa + h)) - math.log(ive(v, kappa - h)) + 2 * h) / (2 * h)
    assert grad.item() == pytest.approx(finite, rel=1e-7)
    assert torch.autograd.gradcheck(lambda k: bessel_ratio(v, k), (x,))


def test_log_bessel_keeps_float32_and_batch_shape():
    kappa = torch.tensor([[1.0, 20.0], [300.0, 4000.0]])
    value = log_bessel(3.0, kappa)
    assert value.dtype == torch.float32 and value.shape == (2, 2)
    assert torch.isfinite(value).all()


@pytest.mark.parametrize(("m", "kappa"), [(2, 1.0), (3, 5.0), (10, 2.0), (10, 50.0), (64, 500.0)])
def test_closed_form_kl_to_uniform_matches_monte_carlo(m, kappa):
    torch.manual_seed(m)
    q = vmf(m, kappa, n=2)
    p = UniformSphere(None, continuous(m), None)
    z = q.rsample(40000)
    log_ratio = q.log_prob(z) - p.log_prob(z.flatten(0, 1), None).view(z.shape[:2])
    kl = vmf_to_uniform_kl(q, p)
    assert kl.shape == (2, m)
    estimate, error = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(z.shape[0])
    assert ((kl.sum(1) - estimate).abs() <= 4 * error).all()



@pytest.mark.parametrize(("m", "kappa"), [(2, 0.5), (3, 5.0), (10, 2.0), (10, 500.0), (64, 50.0)])
def test_samples_are_unit_with_the_mean_resultant_length(m, kappa):
    torch.manual_seed(0)
    q = vmf(m, kappa, n=3)
    q.mu[1] = torch.eye(m, dtype=torch.float64)[0]  # both branches of the reflection, and mu = +-e1 exactly
    q.mu[2] = -q.mu[1]
    n = 50000
    z = q.rsample(n)
    assert z.shape == (n, 3, m)
    assert torch.allclose(z.norm(dim=-1), torch.ones(()).double(), atol=1e-12)
    mean = z.mean(0)
    w = (z * q.mu).sum(-1)
    error = w.std(0) / math.sqrt(n)
    length = mean_resultant(m, kappa)
    # |mean| also holds the mean's orthogonal noise: an upward bias of (1 - E[w^2]) / (2 A n) at most
    assert ((mean.norm(dim=-1) - length).abs() <= 4 * error + 1 / (2 * length * n)).all()
    # the mean lies along mu: what is orthogonal to it averages out
    orthogonal = mean - (mean * q.mu).sum(-1, keepdim=True) * q.mu
    assert (orthogonal.norm(dim=-1) <= 5 * math.sqrt(m / n)).all()


@pytest.mark.parametrize("kappa", [0.5, 3.0, 40.0])
def test_mu_z_follows_its_exact_distribution_on_s2(kappa):
    """On S^2 the density of w = mu.z is kappa exp(kappa w) / (2 sinh kappa): a one-sample KS test
    against its CDF (exp(kappa (w + 1)) - 1) / (exp(2 kappa) - 1)."""
    torch.manual_seed(1)
    q = vmf(3, kappa)
    w = (q.rsample(20000) * q.mu).sum(-1).flatten().numpy()
    result = stats.kstest(w, lambda x: np.expm1(kappa * (x + 1)) / np.expm1(2 * kappa))
    assert result.pvalue > 1e-3


@pytest.mark.parametrize(("m", "kappa"), [(2, 0.5), (3, 2.0), (10, 2.0), (10, 10.0)])
def test_corrected_gradient_of_the_rejection_sampler(m, kappa):
    """d/dkappa E[mu.z] = dA_m/dkappa: the loss -f + correction(f) with f = mu.z (playing log p(x|z))
    gives it within Monte Carlo error; the reparameterised part alone does not."""
    torch.manual_seed(2)
    images, draws = 2000, 50
    mu = torch.zeros(images, m, dtype=torch.float64)
    mu[:, 0] = 1
    concentration = torch.full((images,), kappa, dtype=torch.float64, requires_grad=True)
    q = VonMisesFisher(mu, concentration)
    f = (q.rsample(draws) * mu).sum(-1)  # [k, B]
    reparameterised = -f.mean()
    (alone,) = torch.autograd.grad(reparameterised, concentration, retain_graph=True)
    (full,) = torch.autograd.grad(reparameterised + q.correction(f), concentration)
    h = 1e-5
    dA = (mean_resultant(m, kappa + h) - mean_resultant(m, kappa - h)) / (2 * h)
    per_image = -full * images  # each image's own estimate of dA/dkappa over its draws
    error = per_image.std() / math.sqrt(images)
    assert abs(per_image.mean().item() - dA) <= 4 * error
    assert abs(-alone.sum().item() - dA) > 10 * error
    assert q.correction(f).item() == 0.0


def test_uniform_prior_density_and_samples():
    p = UniformSphere(None, continuous(3), None)
    assert log_sphere_area(2) == pytest.approx(math.log(2 * math.pi))
    assert log_sphere_area(3) == pytest.approx(math.log(4 * math.pi))
    torch.manual_seed(3)
    z = p.sample(20000, None)
    assert torch.allclose(z.norm(dim=-1), torch.ones(())) and z.mean(0).abs().max() < 4 / math.sqrt(20000)
    assert torch.allclose(p.log_prob(z, None), torch.full((20000,), -math.log(4 * math.pi)))


def test_closed_form_kl_is_zero_for_a_nearly_uniform_vmf():
    q = vmf(10, 1e-6)
    assert vmf_to_uniform_kl(q, UniformSphere(None, continuous(10), None)).sum().item() == pytest.approx(0, abs=1e-10)


def test_sphere_prior_refuses_other_latents_and_posteriors(digits):
    with pytest.raises(UsageError, match="continuous latent vector"):
        resolve("vq+prior=sphere", digits.spec)
    with pytest.raises(UsageError, match="pair it with encoder vmf"):
        resolve("gaussian+prior=sphere", digits.spec)


def test_svae_trains_one_step_on_digits(digits):
    combo = resolve("svae", digits.spec)
    assert combo.closed_form_kl
    model = VAE(combo)
    objective = build_objective(combo)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    terms = model(Batch(digits.to_model(digits.train[:32], train=True)), objective.draws)
    assert terms.z.shape == (1, 32, 10) and torch.allclose(terms.z.norm(dim=-1), torch.ones(()), atol=1e-5)
    # the closed-form KL per image against the Monte Carlo term of the same draw's density
    posterior = terms.posterior
    expected = (posterior.kappa * bessel_ratio(4.0, posterior.kappa) + log_normaliser(10, posterior.kappa)
                + log_sphere_area(10))
    assert torch.allclose(kl_per_image(terms), expected, rtol=1e-5)
    loss, _ = objective.loss(terms, 0.0)
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    head = model.encoder.head.weight.grad
    assert torch.isfinite(head).all() and head[-1].abs().sum() > 0  # kappa's row receives gradient
    optimizer.step()
