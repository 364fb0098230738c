"""Representation metrics: rate and distortion per image (Alemi et al. 2018) against the negative
ELBO and the hand-computed KL, Burda et al.'s active units against a count of the posterior means'
variances, and I(x; z) (Hoffman & Johnson 2016) against a brute-force evaluation of the same
draws and the closed form of a linear-Gaussian model."""

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm

from vaereg import DiagonalGaussian
from vaereg.combo import resolve
from vaereg.metrics import EvaluationPass, Scoring, checked_values
from vaereg.model import VAE
from vaereg_harness.metrics import information
from vaereg_harness.metrics.information import MutualInformation, MutualInformationConfig, mutual_information
from vaereg_harness.metrics.latents import ActiveUnits, ActiveUnitsConfig, RateDistortion
from vaereg_harness.metrics.passes import evaluation_pass

IMAGES = 60


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


@pytest.fixture(scope="module")
def scored(digits):
    return digits.test_subset(IMAGES)


@pytest.fixture(scope="module")
def model(digits):
    torch.manual_seed(0)
    return VAE(resolve("gaussian", digits.spec)).eval()


@pytest.fixture(scope="module")
def evaluation(model, scored) -> EvaluationPass:
    return evaluation_pass(model, scored, 2, 2, progress=False, seed=0)


def scoring_of(model, data, scored, evaluation) -> Scoring:
    return Scoring(model=model, data=data, test=scored, device=torch.device("cpu"), seed=0, evaluation=evaluation,
                   draw=lambda n: (torch.zeros(n, 1, 8, 8), None))


def encoded(model, scored) -> DiagonalGaussian:
    with torch.no_grad():
        return model.encode(scored.batch(scored.test, None, train=False))


def test_rate_plus_distortion_is_the_negative_elbo_and_the_rate_is_the_closed_form_kl(model, scored, evaluation):
    rate, distortion, nelbo = evaluation.rate, evaluation.distortion, evaluation.nelbo
    assert rate.shape == distortion.shape == nelbo.shape == (IMAGES,) and rate.dtype == torch.float64
    assert torch.allclose(rate + distortion, nelbo, rtol=1e-6, atol=0)
    posterior = encoded(model, scored)
    mean, std = posterior.mean.double().numpy(), posterior.log_std.double().exp().numpy()
    by_hand = (0.5 * (mean ** 2 + std ** 2 - 1) - np.log(std)).sum(1)  # KL(N(mu, s^2) || N(0, 1)) per image
    np.testing.assert_allclose(rate.numpy(), by_hand, rtol=1e-5)
    assert (distortion > 0).all()  # -log of a probability mass over discrete intensities
    values = RateDistortion(None).compute(scoring_of(model, None, scored, evaluation))
    assert values == pytest.approx({"rate": by_hand.mean(), "distortion": distortion.mean().item()}, rel=1e-5)


def test_active_units_by_the_variance_of_the_posterior_means_match_a_hand_count(model, digits, scored, evaluation):
    variances = torch.var(encoded(model, scored).mean.double(), dim=0)  # Burda et al. 2016, sec. 5.2
    low, high = variances.sort().values[[5, 6]]
    threshold = ((low + high) / 2).item()  # between two variances: exactly 6 dimensions lie below it
    scoring = scoring_of(model, digits, scored, evaluation)
    values = ActiveUnits(ActiveUnitsConfig(rule="variance", threshold=threshold)).compute(scoring)
    assert values == {"active_units": variances.numel() - 6, "active_units_rule": f"variance>{threshold:g}"}
    assert values["active_units"] == int((variances > threshold).sum())
    # the default is today's count of dimensions whose mean KL exceeds 0.01 nats
    assert ActiveUnits(ActiveUnitsConfig()).compute(scoring) == {
        "active_units": int((evaluation.kl > 0.01).sum()), "active_units_rule": "kl>0.01"}


def test_metrics_that_need_a_density_or_a_mean_say_why_before_training(digits):
    vq, ae = resolve("vq", digits.spec), resolve("ae", digits.spec)
    assert "needs a continuous latent with a non-deterministic posterior" in MutualInformation(
        MutualInformationConfig()).mismatch(digits, ae)
    assert "needs a continuous latent" in MutualInformation(MutualInformationConfig()).mismatch(digits, vq)
    assert "rule 'variance' needs a continuous latent" in ActiveUnits(
        ActiveUnitsConfig(rule="variance")).mismatch(digits, vq)
    assert ActiveUnits(ActiveUnitsConfig()).mismatch(digits, vq) is None  # the KL rule leaves codes null
    assert MutualInformation(MutualInformationConfig()).mismatch(digits, resolve("gaussian", digits.spec)) is None


class Recorded(DiagonalGaussian):
    """A diagonal Gaussian that keeps what it draws, so a test can score the same draws by hand."""

    drawn: list[torch.Tensor] = []

    def rsample(self, k):
        z = super().rsample(k)
        Recorded.drawn.append(z)
        return z


def test_mutual_information_scores_every_draw_under_every_posterior(monkeypatch):
    monkeypatch.setattr(information, "PAIR_ELEMENTS", 20)  # several calls of log_prob per block of images
    n, draws = 23, 3
    generator = torch.Generator().manual_seed(1)
    mean = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    log_std = 0.3 * torch.randn(n, 2, generator=generator, dtype=torch.float64) - 0.5
    Recorded.drawn = []
    values = mutual_information(lambda a, b: Recorded(mean[a:b], log_std[a:b]), n, draws=draws, batch_size=5)
    z = torch.cat(Recorded.drawn, 1).transpose(0, 1).numpy()  # [n, draws, 2]
    mu, sd = mean.numpy(), log_std.exp().numpy()
    # log q(z_is | x_j) for every draw s of image i and every image j: [n, draws, n]
    pairs = norm.logpdf(z[:, :, None, :], mu[None, None], sd[None, None]).sum(-1)
    own = pairs[np.arange(n), :, np.arange(n)]  # [n, draws]
    by_hand = (own - (logsumexp(pairs, axis=2) - math.log(n))).mean(1)
    np.testing.assert_allclose(values.numpy(), by_hand, rtol=1e-10, atol=1e-12)
    assert (values <= math.log(n) + 1e-12).all()


def linear_gaussian(n: int, w: torch.Tensor, s: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posteriors N(M^-1 W^T x, s^2 M^-1), M = W^T W + s^2, of a 1-d latent z ~ N(0, 1) for
    n images x = W z + s e ~ N(0, W W^T + s^2 I): their means [n, 1] and log stds [n, 1]."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, generator=generator, dtype=torch.float64)
    x = z @ w.T + s * torch.randn(n, w.shape[0], generator=generator, dtype=torch.float64)
    m = (w.T @ w).item() + s ** 2
    return x @ w / m, torch.full((n, 1), 0.5 * math.log(s ** 2 / m), dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1])
def test_mutual_information_of_a_linear_gaussian_model_matches_its_closed_form(seed):
    n, s = 2000, 0.5
    w = torch.tensor([[0.9], [-0.6], [1.1]], dtype=torch.float64)
    exact = 0.5 * math.log(1 + (w.T @ w).item() / s ** 2)  # I(x; z) = 1/2 log det(I + W^T W / s^2)
    assert exact < math.log(n) - 5  # far below the estimator's bound log N
    mean, log_std = linear_gaussian(n, w, s, seed)
    torch.manual_seed(seed)
    values = mutual_information(lambda a, b: DiagonalGaussian(mean[a:b], log_std[a:b]), n, batch_size=300)
    se = values.std().item() / math.sqrt(n)
    assert abs(values.mean().item() - exact) < 3 * se and se < 0.05


def test_mutual_information_saturates_at_log_n_when_the_posteriors_do_not_overlap():
    n = 50
    mean = torch.arange(n, dtype=torch.float64)[:, None] * 10
    values = mutual_information(lambda a, b: DiagonalGaussian(mean[a:b], torch.zeros(b - a, 1, dtype=torch.float64)),
                                n, draws=2)
    assert values.mean().item() == pytest.approx(math.log(n), abs=1e-6) and (values <= math.log(n) + 1e-12).all()


def test_the_metrics_return_every_declared_column_with_its_type(model, digits, scored, evaluation):
    scoring = scoring_of(model, digits, scored, evaluation)
    metrics = {"rate-distortion": RateDistortion(None), "active-units": ActiveUnits(ActiveUnitsConfig()),
               "burda": ActiveUnits(ActiveUnitsConfig(rule="variance")),
               "mutual-information": MutualInformation(MutualInformationConfig(draws=2))}
    for name, metric in metrics.items():
        values = checked_values(name, metric, metric.compute(scoring))
        assert set(values) == {c.name for c in metric.columns}, name
        for column in metric.columns:
            assert type(values[column.name]) is column.type, (name, column.name)
    first = metrics["mutual-information"].compute(scoring)
    assert first == metrics["mutual-information"].compute(scoring)  # seeded from the run's stream
    assert 0 <= first["mutual_information"] <= math.log(IMAGES) and first["mutual_information_se"] > 0
    # without a density there is no rate or distortion: the columns stay null
    empty = EvaluationPass(None, None, 1, None, None, 0.0, no_density="a reconstruction score")
    assert RateDistortion(None).compute(scoring_of(model, digits, scored, empty)) == {}


def test_mutual_information_is_left_null_with_a_warning_for_a_flow_that_scores_only_its_draws(digits, scored):
    planar = VAE(resolve("gaussian+encoder=planar", digits.spec)).eval()
    assert MutualInformation(MutualInformationConfig()).mismatch(digits, planar.combo) is None  # known only later
    scoring = scoring_of(planar, digits, scored, EvaluationPass(None, None, 1, None, None, 0.0))
    with pytest.warns(UserWarning, match="mutual-information left null: PlanarPosterior scores only its own"):
        assert MutualInformation(MutualInformationConfig()).compute(scoring) == {}
