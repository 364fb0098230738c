"""beta-TC-VAE: the MWS/MSS estimators against closed forms and exhaustive enumeration, the
decomposition's telescoping identity, the regression to ``elbo``, and one real optimiser step."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
import torch
from torch import Tensor

from vaereg import DiagonalGaussian, UsageError
from vaereg.combo import resolve
from vaereg.gaussian import normal_log_prob
from vaereg.model import VAE
from vaereg.objectives import build_objective
from vaereg.specs import continuous, discrete
from vaereg_harness.run import trainer
from vaereg_objectives.elbo import ELBO, ELBOConfig
from vaereg_zoo.btcvae import BetaTCVAE, BetaTCVAEConfig, log_qz_and_marginals, stratified_log_weights

ESTIMATORS = ("mws", "mss")
HUGE = 10**12  # a data set so large that the batch's own image has no weight of its own (mss)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tc_estimates(sigma: Tensor, std: float, batch: int, repeats: int, estimator: str) -> Tensor:
    """TC estimates over ``repeats`` batches whose aggregate posterior is N(0, sigma) exactly:
    q(z|x_j) = N(mu_j, std^2 I) with mu_j ~ N(0, sigma - std^2 I). MWS normalises by N M, not M, so
    its TC is the batch-average TC plus (D - 1) log N (paper eq. 5); that constant is taken off."""
    dims = sigma.shape[0]
    root = torch.linalg.cholesky(sigma - std**2 * torch.eye(dims, dtype=torch.float64))
    out = []
    for _ in range(repeats):
        mean = torch.randn(batch, dims, dtype=torch.float64) @ root.T
        posterior = DiagonalGaussian(mean, torch.full_like(mean, math.log(std)))
        z = posterior.rsample(1)[0]
        log_qz, log_marginals = log_qz_and_marginals(posterior.cross_log_prob(z), HUGE, estimator)
        out.append((log_qz - log_marginals).mean() - (dims - 1) * math.log(HUGE) * (estimator == "mws"))
    return torch.stack(out)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(("sigma", "std"), [
    ([[1.0, 0.6, 0.3], [0.6, 1.0, 0.5], [0.3, 0.5, 1.0]], 0.55),  # correlated: TC = 0.3670 nats
    ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], 0.95),  # independent: TC = 0
])
def test_tc_converges_to_the_gaussian_closed_form(estimator, sigma, std):
    # both estimators are biased by O(1/B) (log of a batch mean; MWS also counts each image's own
    # posterior at weight 1/M): broad posteriors and B = 1000 keep that well under the standard error
    sigma = torch.tensor(sigma, dtype=torch.float64)
    closed = 0.5 * (sigma.diagonal().log().sum() - torch.logdet(sigma))
    tc = tc_estimates(sigma, std, batch=1000, repeats=20, estimator=estimator)
    standard_error = tc.std() / math.sqrt(len(tc))
    assert abs(tc.mean() - closed) < 4 * standard_error, (tc.mean().item(), closed.item(), standard_error.item())


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_density_estimates_average_to_their_targets_over_every_batch(estimator):
    # a data set of 5 one-dimensional posteriors, z_n a fixed point for image n; every ordered batch of 3
    # (each a uniform sample without replacement) is enumerated. MSS is unbiased for the aggregate
    # q(z_n) = 1/N sum_m q(z_n|x_m); MWS's mean is 1/(N M) (q(z_n|x_n) + (M - 1)/(N - 1) sum_{m != n} q(z_n|x_m)).
    n_data, batch = 5, 3
    means = torch.tensor([-1.0, 0.3, 0.5, 1.7, 2.2], dtype=torch.float64)
    log_stds = torch.tensor([0.0, -0.5, 0.4, -0.2, 0.1], dtype=torch.float64)
    points = torch.tensor([-0.6, 0.2, 1.1, 1.5, 3.0], dtype=torch.float64)
    density = normal_log_prob(points[:, None], means[None], log_stds[None]).exp()  # [n, m] = q(z_n | x_m)
    total, count = torch.zeros(n_data, dtype=torch.float64), torch.zeros(n_data)
    for members in itertools.permutations(range(n_data), batch):
        rows = torch.tensor(members)
        cross = density[rows][:, rows].log()[:, :, None]
        log_qz, log_marginal = log_qz_and_marginals(cross, n_data, estimator)
        torch.testing.assert_close(log_qz, log_marginal)  # one dimension: its own marginal
        total.index_add_(0, rows, log_qz.exp())
        count.index_add_(0, rows, torch.ones(batch))
    own, others = density.diagonal(), density.sum(1) - density.diagonal()
    if estimator == "mss":
        expected = (own + others) / n_data
    else:
        expected = (own + (batch - 1) / (n_data - 1) * others) / (n_data * batch)
    torch.testing.assert_close(total / count, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_identical_posteriors_give_their_own_density(estimator):
    # every image has the same factorised posterior, so q(z) = q(z|x): MSS's weights sum to one and give it
    # exactly (TC 0); MWS's give it less log N per density, so its TC is exactly (D - 1) log N
    n_data, batch, dims = 100, 4, 3
    posterior = DiagonalGaussian(torch.full((batch, dims), 0.3), torch.full((batch, dims), -0.2))
    z = posterior.rsample(1)[0]
    log_qz, log_marginals = log_qz_and_marginals(posterior.cross_log_prob(z), n_data, estimator)
    offset = math.log(n_data) * (estimator == "mws")
    torch.testing.assert_close(log_qz, posterior.log_prob(z[None])[0] - offset)
    torch.testing.assert_close(log_qz - log_marginals, torch.full((batch,), (dims - 1) * offset))


def test_stratified_weights_by_hand():
    # N = 5, B = 3 (M = 2): own image 1/N, the next (N - M)/(N M) = 0.3, the remaining one 1/M
    expected = torch.tensor([[0.2, 0.3, 0.5], [0.5, 0.2, 0.3], [0.3, 0.5, 0.2]], dtype=torch.float64)
    torch.testing.assert_close(stratified_log_weights(3, 5).exp(), expected)


def test_mss_refuses_a_dataset_smaller_than_the_batch():
    with pytest.raises(UsageError, match="dataset_size"):
        log_qz_and_marginals(torch.zeros(8, 8, 2), 4, "mss")


def test_mismatch_takes_continuous_vectors_only():
    config = BetaTCVAEConfig()
    assert BetaTCVAE.mismatch(continuous(16), config, True) is None
    for latent in (continuous(4, 2, 2), discrete(32, 8, 4, 4)):
        reason = BetaTCVAE.mismatch(latent, config, True)
        assert "continuous latent vector" in reason and "\n" not in reason


@pytest.fixture(scope="module")
def model_and_batch(digits):
    torch.manual_seed(0)
    combo = resolve("gaussian", digits.spec)
    model = VAE(combo)
    batch = digits.batch(digits.train[:64], digits.train_labels[:64], train=True)
    return combo, model, batch


def objective(combo, **options) -> BetaTCVAE:
    config = BetaTCVAEConfig(**{"dataset_size": 1437, **options})
    assert BetaTCVAE.mismatch(combo.latent, config, combo.closed_form_kl) is None
    return BetaTCVAE(combo.data, combo.latent, config, combo.closed_form_kl)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_unit_weights_are_the_elbo_with_a_monte_carlo_kl(model_and_batch, estimator):
    # the identity tested: mi + tc + dwkl == mean(log q(z|x) - log p(z)) on the first draw (the estimated
    # log q(z) and sum_j log q(z_j) telescope away), so with alpha = beta = gamma = 1 the loss is elbo's on
    # the same terms with their closed-form KL dropped (elbo then uses the one-draw Monte Carlo KL)
    combo, model, batch = model_and_batch
    terms = model(batch, 1)
    loss, stats = objective(combo, alpha=1.0, beta=1.0, gamma=1.0, estimator=estimator).loss(terms, 0.5)
    monte_carlo_kl = (terms.log_qz[0] - terms.log_pz[0]).mean()
    torch.testing.assert_close(stats["mi"] + stats["tc"] + stats["dwkl"], monte_carlo_kl.detach())
    elbo = ELBO(combo.data, combo.latent, ELBOConfig(), combo.closed_form_kl)
    elbo_loss, elbo_stats = elbo.loss(replace(terms, kl=None), 0.5)
    torch.testing.assert_close(loss, elbo_loss)
    torch.testing.assert_close(stats["nelbo"], elbo.loss(terms, 0.5)[1]["nelbo"])  # the model's own NELBO
    # the paper's weights add (beta - 1) TC to that loss, and nothing else
    heavy, heavy_stats = objective(combo, estimator=estimator).loss(terms, 0.5)
    torch.testing.assert_close(heavy, loss + 5.0 * heavy_stats["tc"])


def test_one_optimiser_step_gives_finite_stats(model_and_batch):
    combo, _, batch = model_and_batch
    model, btcvae = VAE(combo), objective(combo)
    before = [p.detach().clone() for p in model.parameters()]
    steps = btcvae.steps(model, list(model.parameters()))
    stats = trainer.update(steps, [torch.optim.Adam(s.parameters, lr=1e-3) for s in steps],
                           model(batch, btcvae.draws), 0.5)
    assert {"loss", "nelbo", "mi", "tc", "dwkl"} <= stats.keys()
    assert all(torch.isfinite(v) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_the_trainer_tells_the_estimator_the_training_split_size(digits, tmp_path):
    """N defaults to the training split's size (beta-TCVAE's q(z) weights), whatever the data
    set; outside a trainer the batch is the whole data set."""
    from vaereg_harness.api import RunConfig, create_model
    from vaereg_harness.run.config import TrainConfig
    from vaereg_harness.run.trainer import Trainer

    config = RunConfig(train=TrainConfig(epochs=1, batch_size=256, device="cpu", threads=1))
    model = create_model("btcvae", digits, config=config)
    btcvae = build_objective(model.combo)
    assert btcvae.config.dataset_size is None and btcvae.training_images is None
    terms = model(digits.batch(digits.train[:8], None, train=True))
    by_batch = objective(model.combo, dataset_size=8).loss(terms, 0.5)[0]
    torch.testing.assert_close(btcvae.loss(terms, 0.5)[0], by_batch)
    Trainer(model, digits, config.train, btcvae, tmp_path / "checkpoint.pt", progress=False)
    assert btcvae.training_images == digits.train.shape[0] == 1437
