"""Hierarchies: the ladder VAE, NVAE and two-level VQ-VAE-2 codes, checked against closed
forms and against their own definitions."""

import itertools
import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from tests.conftest import vaereg_cli
from vaereg import Context, DataSpec, UsageError, discrete
from vaereg.combo import resolve
from vaereg.model import VAE, Batch
from vaereg.objectives import importance_nll, kl_per_level
from vaereg.specs import hierarchy
from vaereg_harness.run import checkpoint
from vaereg_nvae.model import residual_normal_kl
from vaereg_nvae.spectral import SpectralNorms
from vaereg_objectives.elbo import balanced
from vaereg_pixelcnn.parts import PixelCNNConfig, PixelCNNPrior

DIGITS = DataSpec("digits", 1, 8, 8, 17)


def model(text: str, options=None) -> VAE:
    return VAE(resolve(text, DIGITS, options or {})).eval()


NONE = Context()


def images(n: int = 6) -> Batch:
    return Batch(torch.randint(0, 17, (n, 1, 8, 8)).float() / 16)


def test_residual_normal_kl_equals_the_closed_form_gaussian_kl():
    mu_p, log_sigma_p = torch.randn(1000), torch.randn(1000)
    d_mu, d_log_sigma = torch.randn(1000), torch.randn(1000) * 0.5
    q = Normal(mu_p + d_mu, (log_sigma_p + d_log_sigma).exp())
    p = Normal(mu_p, log_sigma_p.exp())
    assert torch.allclose(residual_normal_kl(d_mu, d_log_sigma, log_sigma_p), kl_divergence(q, p), atol=1e-5)


def test_spectral_norm_estimates_converge_to_the_largest_singular_value():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 5, groups=8), nn.Linear(20, 7))
    norms = SpectralNorms(net)
    first = norms.estimate(iterations=1)
    estimate = norms.estimate(iterations=300)
    exact = torch.stack([torch.linalg.matrix_norm(m.weight.flatten(1), ord=2) for m in norms.layers])
    assert torch.allclose(estimate, exact, rtol=1e-4)
    assert not torch.allclose(first, exact, rtol=1e-4)  # one step from a random start is not there yet
    estimate.sum().backward()  # the regulariser is differentiable in the weights
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0


def _posterior_equals_prior(vae: VAE, text: str, merge: str) -> None:
    with torch.no_grad():
        # NVAE: dmu = 0 and log dsigma = 0, so q is exactly the prior; ladder: a zero proposal
        heads = [h[-1] for h in vae.encoder.prior.posteriors] if text == "nvae" else list(vae.encoder.proposals)
        for head in heads:
            head.weight.zero_()
            head.bias.zero_()
            if merge == "precision":  # the bottom-up proposal carries no precision: sigma_hat = e^4
                head.bias[head.bias.shape[0] // 2:] = 4.0


@pytest.mark.parametrize(("text", "merge"), [("hierarchical", "residual"), ("hierarchical", "precision"),
                                             ("nvae", None)])
def test_kl_is_zero_at_every_level_when_the_posterior_is_the_prior(text, merge):
    vae = model(text, {"encoder": {"merge": merge}} if merge else {})
    draw = vae(images())
    assert kl_per_level(vae.combo.latent, draw.kl).abs().max() > 1e-3  # an untrained posterior differs
    _posterior_equals_prior(vae, text, merge)
    draw = vae(images(), k=3)
    levels = kl_per_level(vae.combo.latent, draw.kl)
    assert levels.shape == (6, len(vae.combo.latent.levels))
    assert levels.abs().max() < 1e-5
    assert torch.allclose(draw.log_qz, draw.log_pz, atol=1e-2)  # precision merge: q ~ p to 1e-3


@pytest.mark.parametrize("text", ["hierarchical", "nvae"])
def test_one_walk_gives_what_scoring_the_draw_again_gives(text):
    vae = model(text)
    batch = images()
    posterior = vae.encode(batch)
    draw = vae.terms(batch, posterior, 4)
    again = draw.z.clone()  # a new tensor: the posterior must walk again, teacher-forced
    assert torch.allclose(draw.log_qz, posterior.log_prob(again), atol=1e-4)
    assert torch.allclose(draw.log_pz, vae.prior.log_prob(again.flatten(0, 1), NONE).view(4, 6), atol=1e-4)
    assert torch.allclose(posterior.decoder_input(draw.z), vae.encoder.embed(again.flatten(0, 1), NONE), atol=1e-5)


@pytest.mark.parametrize("text", ["hierarchical", "nvae"])
def test_hierarchy_samples_and_the_nll_covers_every_level(text):
    vae = model(text)
    levels = vae.combo.latent.levels
    assert len(levels) >= 2 and vae.sample(5).shape == (5, 1, 8, 8)
    nll = importance_nll(vae, images(), k=64, chunk=16)
    assert torch.isfinite(nll).all()
    # dropping any one level's log p - log q from the weights changes the estimate
    draw = vae(images(), k=2)
    assert draw.z.shape[-1] == sum(level.size for level in levels)


def test_an_nvae_encoder_with_a_flat_decoder_is_the_documented_error():
    with pytest.raises(UsageError, match=r"encoder 'nvae' is a coupled part that fills the decoder itself"):
        resolve("nvae+decoder=conv", DIGITS)
    with pytest.raises(UsageError, match=r"fills the prior itself.*Swap only the likelihood"):
        resolve("hierarchical+prior=normal", DIGITS)
    with pytest.raises(UsageError, match=r"options for the decoder go to encoder 'nvae'"):
        resolve("nvae", DIGITS, {"decoder": {"width": 8}})
    with pytest.raises(UsageError, match=r"decoder 'conv' does not fit encoder 'vq2'"):
        resolve("vq2+decoder=conv", DIGITS)


def test_cli_refuses_a_coupled_mix_with_exit_2(tmp_path):
    proc = vaereg_cli("eval", "--combo", "nvae+decoder=mlp", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "coupled part" in proc.stderr
    assert not (tmp_path / "vaereg-results").exists()


def test_the_likelihood_stays_swappable_in_a_coupled_combo():
    binary = DataSpec("binarized", 1, 8, 8, 2)
    combo = resolve("nvae+likelihood=bernoulli", binary)
    assert combo.canonical == "encoder=nvae+likelihood=bernoulli"
    assert combo.parts["prior"].name == combo.parts["decoder"].name == "nvae"
    vae = VAE(combo)
    assert vae.prior is vae.encoder.prior and vae.decoder is vae.encoder.decoder
    assert not any(k.startswith(("prior.", "decoder.")) for k in vae.state_dict())  # stored once


def test_nvae_trains_with_warmup_and_kl_balancing_unless_told_otherwise():
    objective = resolve("nvae", DIGITS).configs["objective"]
    assert objective.warmup == 0.3 and objective.kl_balance
    assert resolve("nvae", DIGITS, {"objective": {"warmup": 0.0}}).configs["objective"].warmup == 0.0
    assert resolve("gaussian", DIGITS).configs["objective"].warmup == 0.0
    assert resolve("nvae+objective=iwae", DIGITS).configs["objective"].iw_k == 5  # hints it does not declare: none


def test_kl_balancing_weights_levels_by_their_share_of_the_kl():
    levels = torch.tensor([[1.0, 3.0], [1.0, 3.0]])
    # gamma = 2 * [1, 3] / 4 = [0.5, 1.5]: 0.5 * 1 + 1.5 * 3
    assert torch.allclose(balanced(levels), torch.tensor([5.0, 5.0]), atol=1e-4)


def test_conditional_pixelcnn_prior_over_two_code_levels_sums_to_one():
    latent = hierarchy(discrete(2, 4, 2, 2), discrete(2, 4, 1, 1))  # 2^4 bottom x 2 top maps
    prior = PixelCNNPrior(DIGITS, latent, PixelCNNConfig(width=8, layers=2)).eval()
    every = torch.tensor(list(itertools.product([0, 1], repeat=5)))
    log_p = prior.log_prob(every, NONE)
    assert abs(torch.logsumexp(log_p, 0).item()) < 1e-5
    # the bottom map's probabilities depend on the top code
    bottom_given = [log_p[every[:, 4] == t] - log_p[every[:, 4] == t].logsumexp(0) for t in (0, 1)]
    assert not torch.allclose(*bottom_given)
    samples = prior.sample(7, NONE)
    assert samples.shape == (7, 5) and samples.min() >= 0 and samples.max() <= 1


def test_vq2_nll_is_reconstruction_plus_both_prior_terms():
    vae = model("vq2+pixelcnn", {"prior": {"width": 8, "layers": 2}})
    batch = images()
    posterior = vae.encode(batch)
    codes = posterior.rsample(1)[0]
    bottom, top = vae.combo.latent.split(codes)
    prior = vae.prior
    log_top = prior.nets[1].log_prob(top.unsqueeze(1))
    log_bottom = prior.nets[0].log_prob(bottom.unsqueeze(1), prior._condition(0, [bottom, top]))
    log_px = vae.likelihood.log_prob(batch.x, vae.decoder(posterior.decoder_input(codes.unsqueeze(0)), NONE), NONE)
    expected = -(log_px + log_bottom + log_top).double()
    vae.prior_trained = True  # score with the PixelCNNs, not the stage-1 stand-in
    assert torch.allclose(importance_nll(vae, batch, k=50, chunk=10), expected, atol=1e-3)


def test_uniform_prior_over_two_code_levels_costs_their_positions_times_log_k():
    vae = model("vq2")
    bottom, top = vae.combo.latent.levels
    codes = vae.prior.sample(3, NONE)
    assert codes.shape == (3, bottom.size + top.size)
    expected = -(bottom.size + top.size) * math.log(32)
    assert torch.allclose(vae.prior.log_prob(codes, NONE), torch.full((3,), expected))


@pytest.mark.parametrize("text", ["nvae", "vq2+pixelcnn"])
def test_coupled_and_two_level_checkpoints_rebuild(text, tmp_path):
    vae = model(text)
    path = tmp_path / "c.pt"
    vae.prior_trained = True
    checkpoint.save(path, vae, state={})
    rebuilt = checkpoint.rebuild(checkpoint.load(path)).eval()
    assert rebuilt.combo.canonical == vae.combo.canonical and rebuilt.prior_trained
    for (name, a), (_, b) in zip(vae.state_dict().items(), rebuilt.state_dict().items(), strict=True):
        assert torch.equal(a, b) if torch.is_tensor(a) else a == b, name


def test_eval_rows_carry_kl_per_level_and_active_units(tmp_path):
    vaereg_cli("eval", "--combo", "hierarchical", "--combo", "vq2", "--epochs", "1", "--iw-samples", "4",
               "--quiet", cwd=tmp_path)
    import json

    from vaereg_harness.store.results import read_results

    rows = {r["combo"]: r for r in read_results(tmp_path / "vaereg-results").to_pylist()}
    ladder, vq2 = rows["hierarchical"], rows["vq2"]
    levels = json.loads(ladder["kl_per_level"])
    assert len(levels) == 2 and all(v >= 0 for v in levels)
    assert 0 <= ladder["active_units"] <= 16 + 8
    assert math.isfinite(ladder["nll_nats"]) and ladder["nll_nats"] <= ladder["nelbo_nats"] + 1e-6
    assert vq2["kl_per_level"] is None and vq2["codebook_perplexity"] >= 1
