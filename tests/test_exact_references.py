"""Numbers checked against closed forms: a linear-Gaussian VAE's log p(x), likelihood
normalisation over all bins, and bits/dim against a uniform likelihood."""

import math
from dataclasses import dataclass

import torch

import vaereg_objectives
from vaereg import (
    Context,
    DataSpec,
    Decoder,
    DiagonalGaussian,
    Encoder,
    Likelihood,
    StandardNormal,
    continuous,
    hookimpl,
)
from vaereg.combo import resolve
from vaereg.gaussian import diagonal_to_standard_kl
from vaereg.model import VAE, Batch
from vaereg.objectives import importance_nll, negative_elbo
from vaereg.registry import build_registry
from vaereg_gaussian.likelihoods import Bernoulli, DequantizedGaussian, DiscretizedLogistic, LogisticMixtureConfig

NONE = Context()

# A probabilistic-PCA model: z ~ N(0, I_d), x = W z + b + sigma * eps. With orthogonal columns of W
# the exact posterior is diagonal, so a perturbed DiagonalGaussian is a proposal of known quality.
D, LATENT, SIGMA = 6, 3, 0.5
torch.manual_seed(1)
W = torch.linalg.qr(torch.randn(D, D))[0][:, :LATENT] * torch.tensor([2.0, 1.5, 1.0])
B = torch.randn(D)


@dataclass
class Shift:
    mean_shift: float = 0.0
    std_scale: float = 1.0


class LinearEncoder(Encoder):
    """Exact pPCA posterior, shifted and widened by the config."""

    Config = Shift
    posterior = DiagonalGaussian

    @classmethod
    def latent_spec(cls, data, config):
        return continuous(LATENT)

    def __init__(self, data, latent, config):
        super().__init__(data, latent, config)
        self.config = config

    def forward(self, x, context):
        m = W.T @ W + SIGMA**2 * torch.eye(LATENT)
        mean = (x.flatten(1) - B) @ W @ torch.linalg.inv(m).T
        std = torch.sqrt(SIGMA**2 / torch.diagonal(m)).expand_as(mean)
        return DiagonalGaussian(mean + self.config.mean_shift, torch.log(std * self.config.std_scale))


class LinearDecoder(Decoder):
    def forward(self, z, context):
        return (z @ W.T + B).view(-1, 1, 1, D)


class FixedGaussian(Likelihood):
    """A continuous density, for this closed-form check only."""

    def param_channels(self):
        return 1

    def log_prob(self, x, params, context):
        return (-0.5 * ((x - params) / SIGMA) ** 2 - math.log(SIGMA) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)

    def sample(self, params, context):
        return params + SIGMA * torch.randn_like(params)


class PPCA:
    VAEREG_PLUGIN_API = 3

    @hookimpl
    def register_parts(register):
        register("linear", LinearEncoder)
        register("linear", LinearDecoder)
        register("normal", StandardNormal)
        register("fixed", FixedGaussian)


def ppca_model(**shift):
    registry = build_registry([("ppca", PPCA, "0"), ("objectives", vaereg_objectives, "0")])
    combo = resolve(
        "encoder=linear+decoder=linear+prior=normal+likelihood=fixed",
        DataSpec("ppca", 1, 1, D, 2), {"encoder": shift}, registry,
    )
    return VAE(combo)


def exact_log_px(x):
    cov = W @ W.T + SIGMA**2 * torch.eye(D)
    return torch.distributions.MultivariateNormal(B, cov).log_prob(x.flatten(1))


def test_importance_sampled_nll_matches_closed_form_ppca():
    x = (torch.randn(32, LATENT) @ W.T + B + SIGMA * torch.randn(32, D)).view(32, 1, 1, D)
    model = ppca_model(mean_shift=0.3, std_scale=1.4)
    exact = -exact_log_px(x)
    nll = importance_nll(model, Batch(x), k=5000, chunk=700)
    bound = negative_elbo(model(Batch(x)))
    assert (nll - exact).abs().mean() < 0.05
    assert (bound - exact).mean() > 0.1  # the proposal is off: the ELBO is visibly looser than the IS estimate


def test_exact_posterior_makes_every_weight_equal():
    x = torch.randn(8, 1, 1, D)
    model = ppca_model()
    assert torch.allclose(importance_nll(model, Batch(x), k=16, chunk=5), -exact_log_px(x).double(), atol=1e-4)


def _all_intensities(levels, channels=1):
    """Every level of a 1-pixel image, as model input."""
    return (torch.arange(levels).float() / (levels - 1)).view(levels, 1, 1, 1).expand(levels, channels, 1, 1)


def test_bernoulli_sums_to_one():
    spec = DataSpec("bin", 1, 1, 1, 2)
    lik = Bernoulli(spec, continuous(1), None)
    params = torch.randn(1, 1, 1, 1).expand(2, 1, 1, 1)
    assert torch.isclose(lik.log_prob(_all_intensities(2), params, NONE).exp().sum(), torch.tensor(1.0), atol=1e-6)


def test_discretized_logistic_sums_to_one_edges_included():
    for levels, spread in [(17, 1.0), (256, 3.0), (2, 1.0)]:
        spec = DataSpec("d", 1, 1, 1, levels)
        lik = DiscretizedLogistic(spec, continuous(1), LogisticMixtureConfig(mixtures=3))
        params = torch.randn(1, lik.param_channels(), 1, 1) * spread
        params[:, 3:6] = torch.tensor([-1.0, 1.0, 0.2]).view(1, 3, 1, 1)  # means at both edges and inside
        total = lik.log_prob(_all_intensities(levels), params.expand(levels, -1, -1, -1), NONE).exp().sum()
        assert abs(total.item() - 1.0) < 1e-5, (levels, total)


def test_discretized_logistic_puts_edge_mass_on_edge_bins():
    spec = DataSpec("d", 1, 1, 1, 256)
    lik = DiscretizedLogistic(spec, continuous(1), LogisticMixtureConfig(mixtures=1))
    params = torch.tensor([0.0, -5.0, -7.0]).view(1, 3, 1, 1)  # a spike far below -1
    log_p = lik.log_prob(_all_intensities(256), params.expand(256, -1, -1, -1), NONE)
    assert log_p[0].exp() > 0.999 and log_p[1:].exp().sum() < 1e-3


def test_dequantized_gaussian_integrates_to_its_mass_on_the_unit_interval():
    levels = 17
    spec = DataSpec("d", 1, 1, 1, levels)
    lik = DequantizedGaussian(spec, continuous(1), None)
    params = torch.tensor([0.5, math.log(0.15)]).view(1, 2, 1, 1)
    draws = 4000  # Monte Carlo over u within each bin
    x = _all_intensities(levels).repeat(draws, 1, 1, 1)
    probs = lik.log_prob(x, params.expand(x.shape[0], -1, -1, -1), NONE).exp().view(draws, levels).mean(0)
    mass = torch.distributions.Normal(0.5, 0.15).cdf(torch.tensor(1.0)) - torch.distributions.Normal(0.5, 0.15).cdf(
        torch.tensor(0.0)
    )
    assert abs(probs.sum().item() - mass.item()) < 0.01


def test_bits_per_dim_against_uniform_likelihood():
    spec = DataSpec("img", 3, 4, 5, 2)
    lik = Bernoulli(spec, continuous(1), None)
    x = torch.randint(0, 2, (7, 3, 4, 5)).float()
    nll = -lik.log_prob(x, torch.zeros(7, 3, 4, 5), NONE)  # p = 1/2 per pixel
    assert torch.allclose(nll, torch.full((7,), 60 * math.log(2)))
    assert abs(spec.bits_per_dim(nll[0].item()) - 1.0) < 1e-6
    assert abs(DataSpec("img", 1, 8, 8, 256).bits_per_dim(64 * math.log(256)) - 8.0) < 1e-12


def test_standard_normal_kl_matches_monte_carlo():
    prior = StandardNormal(None, continuous(4), None)
    post = DiagonalGaussian(torch.tensor([[0.5, -1.0, 0.0, 2.0]]), torch.tensor([[0.1, -0.5, 0.3, 0.0]]))
    z = post.rsample(200_000)
    mc = (post.log_prob(z) - prior.log_prob(z.flatten(0, 1), NONE).view(200_000, 1)).mean()
    assert abs(diagonal_to_standard_kl(post, prior).sum().item() - mc.item()) < 0.02
