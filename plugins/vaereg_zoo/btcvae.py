"""beta-TC-VAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs", eq. 4): the
ELBO's KL split into index-code mutual information, total correlation and dimension-wise KL,

    loss = -log p(x|z) + alpha * MI + beta * TC + gamma * DWKL + aux
    MI   = log q(z|x) - log q(z),  TC = log q(z) - sum_j log q(z_j),  DWKL = sum_j log q(z_j) - log p(z)

on the first draw z of each image, averaged over the batch. The aggregate posterior q(z) and its
marginals q(z_j) are estimated from the batch's posteriors (sec. 3 and appendix C):

- ``mws`` (minibatch-weighted sampling, eq. 5): log q(z_i) ~= logsumexp_j log q(z_i|x_j) - log(N M).
  As the paper notes it is a lower bound, not a density: with posteriors that overlap its TC is the
  minibatch-average TC plus (D - 1) log N, a constant that leaves the gradients alone.
- ``mss`` (minibatch-stratified sampling): q(z_i) ~= sum_j w_ij q(z_i|x_j) with w_ii = 1/N, one
  other image weighted (N - M) / (N M) and the remaining M - 1 weighted 1/M (M = B - 1); the
  weights sum to 1 and estimate q(z) without bias when the batch is a uniform sample of the data.

N is ``dataset_size``, the number of training images. MI + TC + DWKL telescopes to log q(z|x) -
log p(z), so alpha = beta = gamma = 1 is the ELBO with a one-draw Monte Carlo KL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import Tensor

from vaereg import Objective, Posterior, Range, UsageError
from vaereg.model import Terms
from vaereg.objectives import kl_per_image, vector_mismatch
from vaereg.specs import LatentSpec

PRESET = ("btcvae", "beta-TC-VAE (Chen et al. 2018): the KL split into index-code MI, total correlation "
          "(weighted beta = 6) and dimension-wise KL, estimated over the minibatch", {})


@dataclass
class BetaTCVAEConfig:
    """``alpha``, ``beta``, ``gamma``: weights of the index-code mutual information, the total
    correlation and the dimension-wise KL (the paper's defaults). ``estimator``: minibatch-weighted
    (``mws``) or minibatch-stratified (``mss``) sampling of the aggregate posterior.
    ``dataset_size``: the number of training images N the estimators weight by (None: the
    training split's size, which the trainer tells the objective; outside a trainer, as in the
    probe, the batch is the whole data set)."""

    alpha: Annotated[float, Range(0, 1e6)] = 1.0
    beta: Annotated[float, Range(0, 1e6)] = 6.0
    gamma: Annotated[float, Range(0, 1e6)] = 1.0
    estimator: Literal["mws", "mss"] = "mss"
    dataset_size: Annotated[int, Range(1, 10**12)] | None = None


def stratified_log_weights(batch: int, dataset_size: int) -> Tensor:
    """log w ``[B, B]`` of minibatch-stratified sampling: row i weights image j's posterior at z_i."""
    n, m = dataset_size, batch - 1
    if m == 0:
        return torch.full((1, 1), -math.log(n), dtype=torch.float64)
    weights = torch.full((batch, batch), 1 / m, dtype=torch.float64)
    weights.fill_diagonal_(1 / n)
    rows = torch.arange(batch)
    weights[rows, (rows + 1) % batch] = (n - m) / (n * m)
    return weights.log()


def log_qz_and_marginals(cross_log_prob: Tensor, dataset_size: int,
                         estimator: Literal["mws", "mss"]) -> tuple[Tensor, Tensor]:
    """Estimates of log q(z_i) and sum_d log q(z_i^d), each ``[B]``, from ``cross_log_prob``
    ``[B, B, D]`` = log q(z_i^d | x_j) (row i: image i's draw; column j: image j's posterior)."""
    batch = cross_log_prob.shape[0]
    if estimator == "mws":
        log_w = torch.full((batch, batch), -math.log(dataset_size * batch), dtype=torch.float64)
    elif dataset_size < batch:
        raise UsageError(f"objective.dataset_size ({dataset_size}) is smaller than the batch ({batch}); "
                         "set it to the number of training images")
    else:
        log_w = stratified_log_weights(batch, dataset_size)
    log_w = log_w.to(cross_log_prob)
    log_qz = torch.logsumexp(log_w + cross_log_prob.sum(2), 1)
    log_marginals = torch.logsumexp(log_w[:, :, None] + cross_log_prob, 1).sum(1)
    return log_qz, log_marginals


class BetaTCVAE(Objective):
    """The negative ELBO with its KL split into MI, TC and dimension-wise KL, weighted separately."""

    Config = BetaTCVAEConfig
    latent_kinds = frozenset({"continuous"})

    @classmethod
    def mismatch(cls, latent: LatentSpec, config: BetaTCVAEConfig, closed_form_kl: bool) -> str | None:
        return vector_mismatch(latent, "the total correlation is over its dimensions")

    @classmethod
    def encoder_mismatch(cls, posterior: type[Posterior]) -> str | None:
        if posterior.cross_log_prob is Posterior.cross_log_prob:
            return (f"estimates q(z) from log q(z_i | x_j) per dimension (Posterior.cross_log_prob), which the "
                    f"encoder's {posterior.__name__} does not give; pick an encoder with a factorised posterior "
                    f"(gaussian, gaussian-mlp)")
        return None

    @classmethod
    def training_mismatch(cls, config: BetaTCVAEConfig, batch_size: int, training_images: int) -> str | None:
        size = config.dataset_size or training_images
        if config.estimator == "mss" and size < batch_size:
            named = "objective.dataset_size" if config.dataset_size else "the training split"
            return (f"minibatch-stratified sampling needs a data set at least as large as the batch, but {named} "
                    f"holds {size} images and --batch-size is {batch_size}; lower --batch-size or set "
                    f"objective.estimator=mws")
        return None

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        config = self.config
        z = terms.z[0]
        log_qz_x, log_pz, log_px = terms.log_qz[0], terms.log_pz[0], terms.log_px[0]
        size = config.dataset_size or self.training_images or z.shape[0]  # outside training: the batch alone
        log_qz, log_marginals = log_qz_and_marginals(terms.posterior.cross_log_prob(z).flatten(2), size,
                                                     config.estimator)
        mi, tc, dwkl = (log_qz_x - log_qz).mean(), (log_qz - log_marginals).mean(), (log_marginals - log_pz).mean()
        loss = -log_px.mean() + config.alpha * mi + config.beta * tc + config.gamma * dwkl + terms.aux
        stats = {"loss": loss.detach(), "nelbo": (kl_per_image(terms) - log_px).mean().detach(),
                 "mi": mi.detach(), "tc": tc.detach(), "dwkl": dwkl.detach()}
        stats.update({k: v.detach() for k, v in terms.stats.items()})
        return loss, stats
