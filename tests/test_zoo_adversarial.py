"""The adversarial objectives (FactorVAE, AAE, VAE-GAN): FactorVAE's permutation keeps every
marginal and breaks the joint; each loss against a hand computation with discriminator weights set
by hand; the regressions to the ELBO and to the reconstruction with the extra terms off; and one
real update, in which every parameter group moves by its own step's gradient and nothing else."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from vaereg import DiagonalGaussian, PointMass, UsageError
from vaereg.combo import resolve
from vaereg.context import Context
from vaereg.model import VAE, Batch, Terms
from vaereg.objectives import build_objective
from vaereg.specs import DataSpec, continuous, discrete
from vaereg_harness.run.trainer import update
from vaereg_zoo.aae import AAE, AAEConfig
from vaereg_zoo.factorvae import FactorVAE, FactorVAEConfig, permute_dims
from vaereg_zoo.vaegan import VAEGAN, VAEGANConfig

TINY = DataSpec("tiny", 1, 4, 4, 17)  # one 4x4 grid: the conv discriminator has no stride-2 layer


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


@pytest.fixture(scope="module")
def gaussian(digits):
    return resolve("gaussian", digits.spec)


@pytest.fixture(scope="module")
def deterministic(digits):
    return resolve("gaussian+encoder=deterministic", digits.spec)


def images(digits, n=16) -> Batch:
    return Batch(digits.to_model(digits.train[:n], train=True))


def hand_terms(z: Tensor, log_px: list[float], kl: Tensor | None = None, aux: float = 0.0,
               x: Tensor | None = None, model=None) -> Terms:
    """Terms of one draw per image: ``z`` ``[B, D]``; a Gaussian posterior when ``kl`` is given,
    else a point mass; computed by ``model`` (a stand-in) when given."""
    b = z.shape[0]
    posterior = DiagonalGaussian(z, torch.zeros_like(z)) if kl is not None else PointMass(z)
    zeros = torch.zeros(1, b)
    return Terms(z=z[None], log_px=torch.tensor([log_px]), log_pz=zeros, log_qz=zeros, kl=kl,
                 aux=torch.tensor(aux), deterministic=kl is None, stats={}, posterior=posterior,
                 batch=Batch(torch.zeros(b, 1, 4, 4) if x is None else x), model=model)


def set_linear(layer: nn.Linear, weight: list[list[float]], bias: list[float]) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))


def sigmoid(a: float) -> float:
    return 1 / (1 + math.exp(-a))


def leaky(a: float, slope: float) -> float:
    return a if a > 0 else slope * a


# Two hidden units and one logit on 2-d latents: logit(z) = w2 . act(W1 z + b1) + b2.
W1, B1, W2, B2 = [[1.0, -2.0], [0.5, 1.5]], [0.25, -0.5], [[2.0, -1.0]], [0.3]
Z = [[0.4, -0.3], [-1.0, 0.2], [0.7, 0.9]]


def hand_logit(z: list[float], slope: float) -> float:
    hidden = [leaky(sum(w * v for w, v in zip(row, z, strict=True)) + b, slope) for row, b in zip(W1, B1, strict=True)]
    return sum(w * h for w, h in zip(W2[0], hidden, strict=True)) + B2[0]


def set_tiny_mlp(discriminator: nn.Sequential) -> None:
    set_linear(discriminator[0], W1, B1)
    set_linear(discriminator[2], W2, B2)


# ---- FactorVAE ----

def test_permutation_keeps_every_marginal_and_breaks_the_joint():
    base = torch.randn(2000, 1, generator=torch.Generator().manual_seed(1))
    z = torch.cat([base, base, -base, torch.randn(2000, 1)], 1)  # three perfectly dependent columns
    permuted = permute_dims(z, torch.Generator().manual_seed(2))
    assert torch.equal(permuted.sort(0).values, z.sort(0).values)
    correlation = torch.corrcoef(permuted.T)
    assert torch.corrcoef(z.T)[0, 1] == pytest.approx(1.0)
    # independent columns of 2000 rows: the correlation's standard error is 1/sqrt(2000) = 0.022
    assert correlation[0, 1].abs() < 0.1 and correlation[0, 2].abs() < 0.1 and correlation[1, 2].abs() < 0.1
    assert (permuted[:, 0] != z[:, 0]).float().mean() > 0.99
    assert torch.equal(permute_dims(z, torch.Generator().manual_seed(2)), permuted)


def test_tc_is_the_discriminators_log_odds_and_enters_with_gamma():
    config = FactorVAEConfig(gamma=3.0, hidden_layers=1, hidden_units=2)
    factor = FactorVAE(None, continuous(2), config, True)
    set_tiny_mlp(factor.discriminator)
    # log(D / (1 - D)) from D itself, not from the logit
    log_odds = [math.log(sigmoid(hand_logit(z, 0.2))) - math.log(1 - sigmoid(hand_logit(z, 0.2))) for z in Z]
    tc = sum(log_odds) / 3
    assert factor.total_correlation(torch.tensor(Z)).item() == pytest.approx(tc, rel=1e-6)
    kl = torch.tensor([[0.5, 1.0], [2.0, 0.0], [1.5, 1.5]])
    terms = hand_terms(torch.tensor(Z), [-10.0, -20.0, -30.0], kl=kl, aux=0.25)
    loss, stats = factor.loss(terms, 0.3)
    nelbo = (1.5 + 10 + 2.0 + 20 + 3.0 + 30) / 3
    assert loss.item() == pytest.approx(nelbo + 3.0 * tc + 0.25, rel=1e-6)
    assert stats["tc"].item() == pytest.approx(tc, rel=1e-6)
    assert stats["nelbo"].item() == pytest.approx(nelbo, rel=1e-6)


def test_discriminator_loss_is_the_cross_entropy_of_joint_against_permuted():
    factor = FactorVAE(None, continuous(2), FactorVAEConfig(hidden_layers=1, hidden_units=2), True)
    set_tiny_mlp(factor.discriminator)
    terms = hand_terms(torch.tensor(Z), [0.0, 0.0, 0.0], kl=torch.zeros(3, 2))
    torch.manual_seed(11)
    loss, _ = factor.discriminator_loss(terms, 0.0)
    torch.manual_seed(11)
    permuted = permute_dims(torch.tensor(Z)).tolist()
    joint = sum(-math.log(sigmoid(hand_logit(z, 0.2))) for z in Z) / 3
    marginals = sum(-math.log(1 - sigmoid(hand_logit(z, 0.2))) for z in permuted) / 3
    assert loss.item() == pytest.approx(0.5 * (joint + marginals), rel=1e-6)


def test_factorvae_at_gamma_zero_is_the_elbo(gaussian, digits):
    terms = VAE(gaussian)(images(digits), 1)
    elbo, _ = build_objective(gaussian).loss(terms, 0.4)
    factor = FactorVAE(gaussian.data, gaussian.latent, FactorVAEConfig(gamma=0.0, hidden_units=32),
                       gaussian.closed_form_kl)
    loss, _ = factor.loss(terms, 0.4)
    assert torch.allclose(loss, elbo, rtol=1e-6, atol=0)


# ---- AAE ----

def test_aae_generator_loss_by_hand():
    aae = AAE(None, continuous(2), AAEConfig(lambda_=2.0, hidden_layers=1, hidden_units=2), False)
    set_tiny_mlp(aae.discriminator)
    loss, stats = aae.loss(hand_terms(torch.tensor(Z), [-4.0, -5.0, -6.0], aux=0.5), 0.0)
    generator = sum(-math.log(sigmoid(hand_logit(z, 0.0))) for z in Z) / 3
    assert stats["generator"].item() == pytest.approx(generator, rel=1e-6)
    assert loss.item() == pytest.approx(5.0 + 2.0 * generator + 0.5, rel=1e-6)


def test_aae_discriminator_reads_the_models_prior_by_hand():
    aae = AAE(None, continuous(2), AAEConfig(hidden_layers=1, hidden_units=2), False)
    set_tiny_mlp(aae.discriminator)
    draws = [[1.0, 1.0], [-0.5, 2.0], [0.0, -1.0]]
    asked = []

    def sample(n: int, context: Context) -> Tensor:
        asked.append((n, context))
        return torch.tensor(draws)

    model = SimpleNamespace(active_prior=SimpleNamespace(sample=sample))
    terms = hand_terms(torch.tensor(Z), [0.0, 0.0, 0.0], model=model)
    loss, _ = aae.discriminator_loss(terms, 0.0)
    assert asked == [(3, terms.batch.context)]
    prior = sum(-math.log(sigmoid(hand_logit(z, 0.0))) for z in draws) / 3
    codes = sum(-math.log(1 - sigmoid(hand_logit(z, 0.0))) for z in Z) / 3
    assert loss.item() == pytest.approx(prior + codes, rel=1e-6)


def test_aae_without_the_generator_is_the_reconstruction(deterministic, digits):
    terms = VAE(deterministic)(images(digits), 1)
    aae = AAE(deterministic.data, deterministic.latent, AAEConfig(lambda_=0.0, hidden_units=32), False)
    loss, _ = aae.loss(terms, 0.0)
    assert torch.allclose(loss, -terms.log_px[0].mean() + terms.aux, rtol=1e-6, atol=0)


@pytest.mark.parametrize("cls", [FactorVAE, AAE, VAEGAN])
def test_refuses_latents_that_are_not_vectors(cls):
    config = cls.Config()
    assert "continuous latent vector" in cls.mismatch(continuous(4, 2, 2), config, True)
    assert cls.mismatch(discrete(8, 4, 3), config, True)
    assert cls.mismatch(continuous(16), config, True) is None


# ---- VAE-GAN ----

def tiny_vaegan(gamma: float = 0.0, pixel_weight: float = 0.0) -> VAEGAN:
    """A discriminator on 4x4 images whose features are 2 relu(x) (a centred 5x5 delta of weight 2)
    and whose logit is relu(mean(features)) - 0.5."""
    vaegan = VAEGAN(TINY, continuous(2), VAEGANConfig(gamma=gamma, pixel_weight=pixel_weight, width=1,
                                                      hidden_units=1), True)
    conv, head = vaegan.discriminator.convolutions[0], vaegan.discriminator.head
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 2, 2] = 2.0
        conv.bias.zero_()
    set_linear(head[0], [[1 / 16] * 16], [0.0])
    set_linear(head[2], [[1.0]], [-0.5])
    return vaegan


def decode(z: Tensor) -> Tensor:
    """The stub decoder: image pixel (i, j) = sigmoid(z_0 + (i - j) z_1 / 4)."""
    i, j = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    return torch.sigmoid(z[:, :1, None, None] + (i - j) * z[:, 1:, None, None] / 4)


def stub_model(prior_draws: Tensor, mean=lambda params, context: params) -> SimpleNamespace:
    return SimpleNamespace(decoder=lambda z, context: decode(z), likelihood=SimpleNamespace(mean=mean),
                           encoder=SimpleNamespace(embed=lambda z, context: z),
                           active_prior=SimpleNamespace(sample=lambda n, context: prior_draws[:n]))


def tiny_case(vaegan: VAEGAN) -> tuple[Terms, Tensor, Tensor]:
    """Terms of three 4x4 images, and the hand-made reconstructions and prior samples."""
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    prior_draws = torch.tensor([[0.3, -1.0], [-0.2, 0.5], [1.0, 1.0]])
    kl = torch.tensor([[0.5, 0.25], [1.0, 0.0], [0.0, 2.0]])
    terms = hand_terms(torch.tensor(Z), [-7.0, -8.0, -9.0], kl=kl, aux=0.125, x=x, model=stub_model(prior_draws))
    return terms, decode(torch.tensor(Z)), decode(prior_draws)


def hand_llike(x: Tensor, recon: Tensor) -> float:
    """-log N(2 relu(x) | 2 relu(x~), I) per image, by the Gaussian density's formula, averaged."""
    total = 0.0
    for a, b in zip(x.flatten(1).tolist(), recon.flatten(1).tolist(), strict=True):
        total += sum(0.5 * (2 * max(u, 0) - 2 * max(v, 0)) ** 2 + 0.5 * math.log(2 * math.pi)
                     for u, v in zip(a, b, strict=True))
    return total / len(x)


def hand_logits(images: Tensor) -> list[float]:
    return [max(sum(2 * max(v, 0) for v in image) / 16, 0) - 0.5 for image in images.flatten(1).tolist()]


def test_vaegan_encoder_loss_is_kl_plus_feature_nll_by_hand():
    vaegan = tiny_vaegan()
    terms, recon, _ = tiny_case(vaegan)
    llike = hand_llike(terms.batch.x, recon)
    loss, stats = vaegan.loss(terms, 0.0)
    assert stats["llike"].item() == pytest.approx(llike, rel=1e-6)
    assert loss.item() == pytest.approx((0.75 + 1.0 + 2.0) / 3 + llike + 0.125, rel=1e-6)
    # against torch's Normal too
    features = vaegan.discriminator.features
    reference = -torch.distributions.Normal(features(recon), 1.0).log_prob(features(terms.batch.x)).sum(1).mean()
    assert stats["llike"].item() == pytest.approx(reference.item(), rel=1e-6)


def test_vaegan_decoder_and_discriminator_losses_by_hand():
    vaegan = tiny_vaegan(gamma=0.5, pixel_weight=2.0)
    terms, recon, sample = tiny_case(vaegan)
    llike = hand_llike(terms.batch.x, recon)
    real, fake, prior = hand_logits(terms.batch.x), hand_logits(recon), hand_logits(sample)
    generator = sum(-math.log(sigmoid(a)) for a in fake) / 3 + sum(-math.log(sigmoid(a)) for a in prior) / 3
    encoder, _ = vaegan.loss(terms, 0.0)
    assert encoder.item() == pytest.approx((0.75 + 1.0 + 2.0) / 3 + llike + 2.0 * 8.0 + 0.125, rel=1e-6)
    decoder, stats = vaegan.decoder_loss(terms, 0.0)
    assert stats["generator"].item() == pytest.approx(generator, rel=1e-6)
    assert decoder.item() == pytest.approx(0.5 * llike + generator + 2.0 * 8.0, rel=1e-6)
    discriminator, _ = vaegan.discriminator_loss(terms, 0.0)
    expected = (sum(-math.log(sigmoid(a)) for a in real) + sum(-math.log(1 - sigmoid(a)) for a in fake)
                + sum(-math.log(1 - sigmoid(a)) for a in prior)) / 3
    assert discriminator.item() == pytest.approx(expected, rel=1e-6)


def test_vaegan_refuses_hand_built_terms_and_a_likelihood_without_a_mean():
    vaegan = tiny_vaegan()
    terms = hand_terms(torch.tensor(Z), [0.0, 0.0, 0.0], kl=torch.zeros(3, 2))
    with pytest.raises(UsageError, match=r"terms VAE.forward returns \(terms.model\)"):
        vaegan.loss(terms, 0.0)
    terms.model = stub_model(torch.zeros(3, 2), mean=lambda params, context: None)
    with pytest.raises(UsageError, match="has none; use dlogistic"):
        vaegan.loss(terms, 0.0)


# ---- one real update: every group moves by its own step's gradient, and only by it ----

def build(name: str, gaussian, deterministic):
    if name == "factorvae":
        return gaussian, FactorVAE(gaussian.data, gaussian.latent, FactorVAEConfig(gamma=5.0, hidden_units=64),
                                   gaussian.closed_form_kl)
    if name == "aae":
        return deterministic, AAE(deterministic.data, deterministic.latent, AAEConfig(hidden_units=64), False)
    return gaussian, VAEGAN(gaussian.data, gaussian.latent, VAEGANConfig(gamma=0.5, width=8, hidden_units=32),
                            gaussian.closed_form_kl)


GROUPS = {"factorvae": ("model", "discriminator"), "aae": ("model", "discriminator"),
          "vaegan": ("encoder", "decoder", "discriminator")}


@pytest.mark.parametrize("name", ["factorvae", "aae", "vaegan"])
def test_one_update_moves_each_group_by_its_own_loss_only(name, gaussian, deterministic, digits):
    combo, objective = build(name, gaussian, deterministic)
    model = VAE(combo)
    steps = objective.steps(model, list(model.parameters()))
    assert tuple(step.name for step in steps) == GROUPS[name]
    everything = [*model.parameters(), *objective.parameters()]
    owned = [id(p) for step in steps for p in step.parameters]
    assert sorted(owned) == sorted(id(p) for p in everything)  # every parameter in exactly one group
    if name == "vaegan":
        decoder = {id(p) for p in [*model.decoder.parameters(), *model.likelihood.parameters()]}
        assert {id(p) for p in steps[1].parameters} == decoder
        assert {id(p) for p in steps[0].parameters} == {id(p) for p in model.encoder.parameters()}

    terms = model(images(digits), objective.draws)
    torch.manual_seed(5)  # the permutation, the prior draws: the same in the reference and the update
    own, crossed = [], []
    for step in steps:
        loss, _ = step.loss(terms, 0.5)
        others = [p for other in steps if other is not step for p in other.parameters]
        grads = torch.autograd.grad(loss, step.parameters + others, retain_graph=True, allow_unused=True)
        own.append([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, step.parameters, strict=False)])
        crossed.append(any(g is not None and g.abs().sum() > 0 for g in grads[len(step.parameters):]))
    # the test can fail: the first step's loss reaches the other groups' parameters (the discriminator)
    assert crossed[0]

    before = [[p.detach().clone() for p in step.parameters] for step in steps]
    torch.manual_seed(5)
    stats = update(steps, [torch.optim.SGD(step.parameters, lr=1.0) for step in steps], terms, 0.5)
    assert "loss" in stats and all(math.isfinite(v.item()) for v in stats.values())
    for step, old, grads in zip(steps, before, own, strict=True):
        moved = [(p.detach() - q) for p, q in zip(step.parameters, old, strict=True)]
        for delta, grad in zip(moved, grads, strict=True):
            assert torch.allclose(delta, -grad, rtol=1e-4, atol=1e-6), step.name
        assert any(delta.abs().sum() > 0 for delta in moved), step.name


@pytest.mark.parametrize("name", ["factorvae", "aae", "vaegan"])
def test_one_adam_step_with_the_steps_own_settings_gives_finite_stats(name, gaussian, deterministic, digits):
    combo, objective = build(name, gaussian, deterministic)
    model = VAE(combo)
    steps = objective.steps(model, list(model.parameters()))
    optimizers = [torch.optim.Adam(s.parameters, lr=s.lr or 1e-3, betas=s.betas) for s in steps]
    stats = update(steps, optimizers, model(images(digits, 32), objective.draws), 0.5)
    assert "loss" in stats and all(math.isfinite(v.item()) for v in stats.values())
    assert "discriminator_loss" in stats
