"""Disentanglement metrics against exact references: codes that copy each factor to its own
dimension score what the formulas give by hand (MIG 1, DCI 1, FactorVAE and beta-VAE 1, SAP the
mean of 1 - 1/K), a mixed code scores lower and noise lowest; DCI's entropies by hand; and the
metric classes score a real model's posterior means, repeatably, in their declared columns."""

import itertools
import math

import numpy as np
import pytest
import torch

from vaereg.combo import resolve
from vaereg.data import Dataset, Factors
from vaereg.metrics import EvaluationPass, Scoring, checked_values
from vaereg.model import VAE
from vaereg.specs import DataSpec
from vaereg_harness.launch.distributed import stream_seed
from vaereg_harness.metrics.disentanglement import (
    MIG,
    SAP,
    BetaVAEScore,
    DCIMetric,
    FactorVAEScore,
    betavae_score,
    dci,
    dci_from_importance,
    factorvae_score,
    mig,
    mutual_information_matrix,
    sap,
    sap_scores,
)
from vaereg_harness.metrics.encodings import posterior_means

SIZES = (6, 6, 7, 8)  # the first two equal, so the 45-degree mix of them is symmetric
METRICS = (MIG, SAP, DCIMetric, BetaVAEScore, FactorVAEScore)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for this module's small model."""


def product(sizes=SIZES, repeats=1) -> np.ndarray:
    """Every combination of the factors' values, ``repeats`` times: ``[repeats * prod(sizes), F]``."""
    return np.tile(np.array(list(itertools.product(*map(range, sizes)))), (repeats, 1))


@pytest.fixture(scope="module")
def factors():
    return product(repeats=2)


def identity_codes(factors):
    return factors.astype(np.float64)


def mixed_codes(factors):
    """The standardised factors with the first two rotated by 45 degrees (an orthogonal mix that
    makes them indistinguishable); factors 3 and 4 keep their own dimensions. A generic rotation
    of noise-free factors keeps, for each factor, a most-aligned dimension of its own, which
    beta-VAE and FactorVAE do not penalise."""
    standard = (factors - factors.mean(0)) / factors.std(0)
    mix = np.eye(len(SIZES))
    mix[:2, :2] = np.array([[1, 1], [1, -1]]) / math.sqrt(2)
    return standard @ mix


def noise_codes(factors):
    return np.random.default_rng(7).standard_normal((len(factors), len(SIZES)))


def rng(seed=0):
    return np.random.default_rng(seed)


def test_mig_is_one_for_factors_copied_to_their_own_dimensions_beside_nuisance_dimensions():
    nuisance = 3  # a fourth, undeclared factor crossed with the others: independent of them exactly
    rows = product((*SIZES, nuisance))
    levels = np.random.default_rng(1).standard_normal((nuisance, 2))  # two noise dimensions per level
    codes = np.concatenate([rows[:, :4].astype(float), levels[rows[:, 4]]], axis=1)
    assert mig(codes, rows[:, :4]) == pytest.approx(1.0, abs=1e-6)
    matrix = mutual_information_matrix(codes, rows[:, :4])
    entropies = np.log(SIZES)  # uniform factors: H = log K nats
    assert matrix.shape == (6, 4)
    np.testing.assert_allclose(matrix[:4], np.diag(entropies), atol=1e-12)
    np.testing.assert_allclose(matrix[4:], 0, atol=1e-12)


def test_mig_is_near_zero_for_noise_and_invariant_to_permuting_the_dimensions(factors):
    noise = np.random.default_rng(3).standard_normal((len(factors), 6))
    assert 0 <= mig(noise, factors) < 0.05
    mixed = mixed_codes(factors)
    permuted = mixed[:, [2, 0, 3, 1]]
    assert mig(permuted, factors) == mig(mixed, factors)
    # the mix: factors 0 and 1 each split equally over two dimensions (gap 0), 2 and 3 kept (gap 1)
    assert mig(mixed, factors) == pytest.approx(0.5, abs=0.02)


def test_dci_from_importance_by_hand():
    assert dci_from_importance(np.eye(3)) == (1.0, 1.0)
    disentanglement, completeness = dci_from_importance(np.array([[0.5, 0.5], [0.0, 1.0]]))
    # rows (code dims): [1/2, 1/2] has entropy 1 bit -> 0, [0, 1] has 0 -> 1; weights 1/2, 1/2
    assert disentanglement == pytest.approx(0.5, abs=1e-12)
    # columns (factors): [1, 0] -> 1; [1/3, 2/3] has entropy 0.9182958340544896 bits -> 0.0817041659455104
    assert completeness == pytest.approx((1 + 0.0817041659455104) / 2, abs=1e-12)
    # dimensions weigh by their share of the importance (3/4, 0, 1/4); base-3 entropy for 3 factors
    disentanglement, _ = dci_from_importance(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    assert disentanglement == pytest.approx(0.75 * 0 + 0.25 * 1, abs=1e-12)


def test_dci_is_one_for_identity_codes_and_lower_for_mixed(factors):
    identity = dci(identity_codes(factors), factors, rng())
    assert identity.disentanglement == pytest.approx(1, abs=1e-9)
    assert identity.completeness == pytest.approx(1, abs=1e-9)
    assert identity.informativeness == 1.0
    mixed = dci(mixed_codes(factors), factors, rng())
    # by hand: dimensions 0 and 1 split their importance equally over factors 0 and 1 (1 - H_4 = 1/2),
    # dimensions 2 and 3 hold one factor each (1), all of equal weight: D = C = (1/2 + 1/2 + 1 + 1) / 4
    assert mixed.disentanglement == pytest.approx(0.75, abs=0.02)
    assert mixed.completeness == pytest.approx(0.75, abs=0.02) and mixed.informativeness > 0.99
    noise = dci(noise_codes(factors), factors, rng())
    assert noise.disentanglement < mixed.disentanglement and noise.informativeness < 0.5


def test_sap_by_hand_on_a_balanced_test_set():
    # fitted and scored on the full product: a factor's own dimension separates it perfectly, and
    # any classifier of an independent dimension has balanced accuracy exactly 1 / K
    rows = product()
    scores = sap_scores(identity_codes(rows), rows, identity_codes(rows), rows)
    expected = np.tile(1 / np.array(SIZES, dtype=float), (4, 1))
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(scores, expected, atol=1e-12)


@pytest.mark.parametrize(("score", "identity"), [
    (lambda c, f, r: sap(c, f, r), None),
    (lambda c, f, r: betavae_score(c, f, r), 1.0),
    (lambda c, f, r: factorvae_score(c, f, r), 1.0),
], ids=["sap", "betavae", "factorvae"])
def test_identity_codes_beat_mixed_codes_beat_noise(factors, score, identity):
    values = [score(codes(factors), factors, rng()) for codes in (identity_codes, mixed_codes, noise_codes)]
    assert values[0] > values[1] + 0.1 and values[1] > values[2] + 0.1, values
    if identity is not None:
        assert values[0] == identity


def test_factorvae_prunes_collapsed_dimensions(factors):
    # a constant dimension would win every vote were it not pruned
    codes = np.concatenate([identity_codes(factors), np.full((len(factors), 1), 3.0)], axis=1)
    assert factorvae_score(codes, factors, rng()) == 1.0
    assert factorvae_score(codes, factors, rng(), prune_variance=0.0) == 1.0  # variance 0 is pruned at any threshold
    assert factorvae_score(codes, factors, rng(), prune_variance=100.0) == 0.0  # every dimension collapsed


@pytest.mark.parametrize("score", [sap, dci, betavae_score, factorvae_score])
def test_the_same_seed_gives_the_same_value(factors, score):
    codes = noise_codes(factors)
    assert score(codes, factors, rng(5)) == score(codes, factors, rng(5))
    assert score(codes, factors, rng(5)) != score(codes, factors, rng(6))


def bar_images(rows: np.ndarray) -> torch.Tensor:
    """``[N, 1, 8, 8]`` binary images: factor 0 places a bar's row, factor 1 its first column,
    factor 2 its length (1..3), factor 3 a dot's column on the last row."""
    images = torch.zeros(len(rows), 1, 8, 8, dtype=torch.uint8)
    for n, (row, column, length, dot) in enumerate(rows):
        images[n, 0, row, column:column + length + 1] = 1
        images[n, 0, 7, dot] = 1
    return images


@pytest.fixture(scope="module")
def bars():
    sizes = (6, 5, 3, 8)
    rows = torch.from_numpy(product(sizes)).long()
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    rows = rows[order]
    train, test = rows[:600], rows[600:]
    return Dataset(DataSpec("bars", 1, 8, 8, 2), bar_images(train.numpy()), bar_images(test.numpy()),
                   factors=Factors(("row", "column", "length", "dot"), sizes, train, test))


def scoring_of(model, data, seed=0):
    empty = torch.zeros(0)
    return Scoring(model=model, data=data, test=data, device=torch.device("cpu"), seed=seed,
                   evaluation=EvaluationPass(empty, empty, 1, None, None, 0.0), draw=lambda n: None)


def test_the_metrics_score_a_models_posterior_means_in_their_declared_columns(bars):
    torch.manual_seed(0)
    model = VAE(resolve("gaussian", bars.spec)).eval()
    scoring = scoring_of(model, bars)
    with torch.no_grad():  # every image at once, straight through the encoder
        x = bars.to_model(torch.cat([bars.train, bars.test]), train=False)
        means = model.encoder(x, bars.context(None)).mean.double()
    pool = torch.cat([bars.factors.train, bars.factors.test]).numpy()
    encodes = []
    model.encoder.register_forward_hook(lambda *_: encodes.append(1))
    np.testing.assert_allclose(posterior_means(model, bars, torch.cat([bars.train, bars.test]), 100).numpy(),
                               means.numpy(), rtol=1e-6, atol=1e-9)
    for cls in METRICS:
        metric = cls(cls.Config())
        assert metric.mismatch(bars, model.combo) is None
        values = metric.compute(scoring)
        assert set(values) == {c.name for c in cls.columns}
        assert checked_values(cls.name, metric, values) == values
        assert all(type(values[c.name]) is c.type and math.isfinite(values[c.name]) for c in cls.columns)
        assert metric.compute(scoring) == values  # the metric's own stream: the same value again
    assert len(encodes) == 8 + 3 + 1  # the check (720 images, 100 a batch), then the pool once for all (600, 120)
    assert MIG(MIG.Config()).compute(scoring)["mig"] == mig(means.numpy(), pool)
    small = FactorVAEScore.Config(batch=16, train_votes=50, eval_votes=20)
    assert FactorVAEScore(small).compute(scoring)["factorvae"] == factorvae_score(
        means.numpy(), pool, np.random.default_rng(stream_seed(0, "metric", "factorvae")), 16, 50, 20)


def test_a_metric_says_why_it_cannot_score(digits, bars):
    metric = MIG(MIG.Config())
    assert metric.mismatch(digits, resolve("gaussian", digits.spec)) == (
        "needs ground-truth factors (a data set such as shapes)")
    for combo in ("vq", "nvae"):
        why = metric.mismatch(bars, resolve(combo, bars.spec))
        assert why.startswith("needs a continuous latent vector with a posterior mean, got a ")
