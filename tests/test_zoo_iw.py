"""The importance-weighted family (Rainforth et al. 2018): the grouped bound against a hand loop
and hand values, MIWAE/CIWAE at their IWAE and ELBO ends, the plain ELBO on one draw, PIWAE's two
gradients against separate backward passes, and one real optimiser step of each."""

import dataclasses
import math

import pytest
import torch
from torch.testing import assert_close

from vaereg import UsageError
from vaereg.combo import resolve
from vaereg.config import from_dict
from vaereg.model import VAE, Batch, Terms
from vaereg.objectives import build_objective, iw_bound
from vaereg_harness.run.trainer import update
from vaereg_objectives.iwae import IWAE
from vaereg_zoo.ciwae import CIWAE, CIWAEConfig
from vaereg_zoo.miwae import MIWAE, MIWAEConfig
from vaereg_zoo.piwae import PIWAE


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


@pytest.fixture(scope="module")
def combo(digits):
    return resolve("gaussian", digits.spec)


def batch_of(digits, n=16) -> Batch:
    return Batch(digits.to_model(digits.train[:n], train=True))


def real_terms(combo, digits, draws: int) -> Terms:
    torch.manual_seed(0)
    return VAE(combo)(batch_of(digits), draws)


def build(cls, combo, **options):
    return cls(combo.data, combo.latent, cls.Config(**options), combo.closed_form_kl)


def test_grouped_bound_on_hand_values():
    # one image with weights 1, 3, 2, 6: IWAE(4) = log 3; MIWAE(2, 2) = (log 2 + log 4) / 2; K = 1: mean log w
    log_weights = torch.tensor([1.0, 3.0, 2.0, 6.0], dtype=torch.float64).log()[:, None]
    assert iw_bound(log_weights).item() == pytest.approx(math.log(3), rel=1e-15)
    assert iw_bound(log_weights, 2).item() == pytest.approx(1.5 * math.log(2), rel=1e-15)
    assert iw_bound(log_weights, 4).item() == pytest.approx(math.log(36) / 4, rel=1e-15)


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 6, 12])
def test_grouped_bound_is_the_mean_of_each_groups_bound(groups):
    log_weights = torch.randn(12, 5, generator=torch.Generator().manual_seed(groups), dtype=torch.float64) * 30
    k = 12 // groups
    expected = sum(torch.logsumexp(log_weights[m * k:(m + 1) * k], 0) - math.log(k) for m in range(groups)) / groups
    assert_close(iw_bound(log_weights, groups), expected, rtol=1e-12, atol=0)


def test_grouped_bound_refuses_uneven_groups():
    with pytest.raises(ValueError, match="5 groups"):
        iw_bound(torch.zeros(12, 2), 5)


def test_miwae_with_one_group_is_iwae(combo, digits):
    terms = real_terms(combo, digits, 6)
    loss, stats = build(MIWAE, combo, iw_m=1, iw_k=6).loss(terms, 0.3)
    iwae_loss, iwae_stats = build(IWAE, combo, iw_k=6).loss(terms, 0.3)
    assert_close(loss, iwae_loss, rtol=0, atol=0)
    assert_close(stats["miwae_bound"], iwae_stats["iwae_bound"], rtol=0, atol=0)


def test_miwae_with_one_draw_per_group_is_the_mean_log_weight(combo, digits):
    terms = real_terms(combo, digits, 4)
    loss, _ = build(MIWAE, combo, iw_m=4, iw_k=1).loss(terms, 0.3)
    assert_close(loss, -terms.log_weights().mean() + terms.aux, rtol=1e-6, atol=0)


def test_miwae_on_hand_groups(combo, digits):
    terms = real_terms(combo, digits, 6)
    log_weights = terms.log_weights()
    loss, _ = build(MIWAE, combo, iw_m=2, iw_k=3).loss(terms, 0.3)
    groups = [torch.logsumexp(log_weights[3 * m:3 * m + 3], 0) - math.log(3) for m in range(2)]
    assert_close(loss, -(groups[0] + groups[1]).mean() / 2 + terms.aux, rtol=1e-6, atol=0)


@pytest.mark.parametrize(("cls", "options"), [(MIWAE, {"iw_m": 1, "iw_k": 1}), (PIWAE, {"iw_m": 1, "iw_k": 1}),
                                              (CIWAE, {"beta": 0.0, "iw_k": 1}), (CIWAE, {"beta": 0.7, "iw_k": 1})])
def test_one_draw_is_the_plain_elbo(combo, digits, cls, options):
    # the family's KL is log q - log p of the draw: the plain ELBO's too once the closed form is withheld
    terms = dataclasses.replace(real_terms(combo, digits, 1), kl=None)
    elbo_loss, _ = build_objective(combo).loss(terms, 0.5)
    loss, _ = build(cls, combo, **options).loss(terms, 0.5)
    assert_close(loss, elbo_loss, rtol=1e-6, atol=0)


def test_ciwae_ends_are_the_elbo_and_iwae(combo, digits):
    terms = real_terms(combo, digits, 5)
    log_weights = terms.log_weights()
    elbo = build(CIWAE, combo, beta=1.0, iw_k=5).loss(terms, 0.0)[0]
    assert_close(elbo, -log_weights.mean() + terms.aux, rtol=1e-6, atol=0)
    iwae = build(CIWAE, combo, beta=0.0, iw_k=5).loss(terms, 0.0)[0]
    assert_close(iwae, build(IWAE, combo, iw_k=5).loss(terms, 0.0)[0], rtol=1e-6, atol=0)
    loss, stats = build(CIWAE, combo, beta=0.3, iw_k=5).loss(terms, 0.0)
    by_hand = 0.3 * log_weights.mean(0) + 0.7 * (torch.logsumexp(log_weights, 0) - math.log(5))
    assert_close(loss, -by_hand.mean() + terms.aux, rtol=1e-6, atol=0)
    assert_close(stats["nelbo"], elbo.detach() - terms.aux, rtol=1e-6, atol=0)


def test_draws_and_draw_limit():
    assert MIWAEConfig().draws == 64 and CIWAEConfig().iw_k == 64
    assert PIWAE(None, None, MIWAEConfig(iw_m=3, iw_k=5), True).draws == 15
    with pytest.raises(UsageError, match="iw_m \\* iw_k"):
        from_dict(MIWAEConfig, {"iw_m": 128, "iw_k": 64}, what="objective miwae")


def grads(parameters) -> list[torch.Tensor]:
    return [p.grad.clone() for p in parameters]


def test_piwae_gradients_come_from_each_networks_bound(combo, digits):
    model = VAE(combo)
    piwae = build(PIWAE, combo, iw_m=2, iw_k=3)
    steps = piwae.steps(model, list(model.parameters()))
    encoder = list(model.encoder.parameters())
    decoder = [p for p in model.parameters() if all(p is not q for q in encoder)]
    assert [s.name for s in steps] == ["decoder", "encoder"]
    assert [id(p) for p in steps[1].parameters] == [id(p) for p in encoder]
    assert [id(p) for p in steps[0].parameters] == [id(p) for p in decoder]

    torch.manual_seed(1)
    terms = model(batch_of(digits), piwae.draws)
    stats = update(steps, [torch.optim.SGD(s.parameters, lr=0.0) for s in steps], terms, 0.5)
    got_encoder, got_decoder = grads(encoder), grads(decoder)

    # the same draws again, and the two bounds by hand
    torch.manual_seed(1)
    log_weights = model(batch_of(digits), piwae.draws).log_weights()
    assert_close(log_weights.detach(), terms.log_weights().detach(), rtol=0, atol=0)
    miwae = sum(torch.logsumexp(log_weights[3 * m:3 * m + 3], 0) - math.log(3) for m in range(2)).mean() / 2
    iwae = (torch.logsumexp(log_weights, 0) - math.log(6)).mean()
    want_encoder = torch.autograd.grad(-miwae, encoder, retain_graph=True)
    want_decoder = torch.autograd.grad(-iwae, decoder, retain_graph=True)
    assert_close(got_encoder, list(want_encoder))
    assert_close(got_decoder, list(want_decoder))
    assert_close(stats["loss"], -iwae.detach(), rtol=1e-6, atol=0)
    assert_close(stats["encoder_loss"], -miwae.detach(), rtol=1e-6, atol=0)
    # the other bound's gradients differ, so the comparison can tell the two apart
    other_encoder = torch.autograd.grad(-iwae, encoder, retain_graph=True)
    other_decoder = torch.autograd.grad(-miwae, decoder)
    assert max((a - b).abs().max().item() for a, b in zip(got_encoder, other_encoder, strict=True)) > 1e-4
    assert max((a - b).abs().max().item() for a, b in zip(got_decoder, other_decoder, strict=True)) > 1e-4


@pytest.mark.parametrize(("cls", "options", "keys"), [
    (MIWAE, {"iw_m": 2, "iw_k": 2}, {"loss", "miwae_bound"}),
    (CIWAE, {"iw_k": 3}, {"loss", "ciwae_bound", "nelbo", "iwae_bound"}),
    (PIWAE, {"iw_m": 2, "iw_k": 2}, {"loss", "iwae_bound", "encoder_loss", "encoder_miwae_bound"})])
def test_one_optimiser_step_gives_finite_stats(combo, digits, cls, options, keys):
    model = VAE(combo)
    objective = build(cls, combo, **options)
    steps = objective.steps(model, list(model.parameters()))
    before = [p.detach().clone() for p in model.parameters()]
    stats = update(steps, [torch.optim.Adam(s.parameters, lr=1e-3) for s in steps],
                   model(batch_of(digits, 32), objective.draws), 0.5)
    assert keys <= set(stats)
    assert all(math.isfinite(v.item()) for v in stats.values())
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
