"""Expectation-maximisation for a Gaussian mixture with full or diagonal covariances, in
float64, with a k-means++ start (Arthur and Vassilvitskii 2007), a covariance floor added to
every variance (as scikit-learn's ``reg_covar``), and restarts keeping the best fit.

Under torchrun each rank holds a share of the points: the sufficient statistics (responsibility
sums, first and second moments, log-likelihood sums) are summed over the ranks, and the
k-means++ start is drawn from every rank's points, so every rank fits the mixture one process
would fit to all of them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from vaereg import collective

Covariance = Literal["full", "diag"]


@dataclass
class Mixture:
    """Weights ``[K]``, means ``[K, D]`` and covariances ``[K, D, D]`` (diagonal matrices for a
    diagonal mixture)."""

    weights: Tensor
    means: Tensor
    covariances: Tensor

    def component_log_probs(self, z: Tensor) -> Tensor:
        """log pi_k + log N(z; mu_k, Sigma_k) ``[N, K]``."""
        chol = torch.linalg.cholesky(self.covariances)  # Sigma_k = L_k L_k^T
        eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device).expand_as(chol)
        inverse = torch.linalg.solve_triangular(chol, eye, upper=False)  # L_k^-1, once per component
        solved = torch.einsum("kde,nke->nkd", inverse, z[:, None] - self.means[None])  # L_k^-1 (z - mu_k)
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        d = z.shape[1]
        return -0.5 * (solved.square().sum(-1) + log_det + d * math.log(2 * math.pi)) + self.weights.log()

    def mean_log_likelihood(self, z: Tensor) -> float:
        return mean_over_ranks(torch.logsumexp(self.component_log_probs(z), 1))


def mean_over_ranks(values: Tensor) -> float:
    """The mean of ``values`` ``[n]`` over every rank's values."""
    total = collective.all_sum(torch.stack([values.sum(), values.new_tensor(values.shape[0])]))
    return (total[0] / total[1]).item()


def maximise(z: Tensor, resp: Tensor, covariance: Covariance, floor: float) -> Mixture:
    """The M step: the mixture maximising the expected log-likelihood under responsibilities
    ``resp`` ``[N, K]``; ``floor`` is added to every variance."""
    counts = collective.all_sum(torch.cat([resp.sum(0), z.new_tensor([z.shape[0]])]))  # per component, all
    n_k, total = counts[:-1] + 10 * torch.finfo(z.dtype).eps, counts[-1]
    first = collective.all_sum(resp.T @ z)
    means = first / n_k[:, None]
    eye = torch.eye(z.shape[1], dtype=z.dtype)
    if covariance == "full":
        diff = z[None] - means[:, None]  # [K, N, D]
        cov = collective.all_sum(torch.einsum("kn,knd,kne->kde", resp.T, diff, diff)) / n_k[:, None, None] + floor * eye
    else:
        second = collective.all_sum(resp.T @ z.square())
        var = second / n_k[:, None] - 2 * means * first / n_k[:, None] + means.square()
        cov = torch.diag_embed(var + floor)
    return Mixture(n_k / total, means, cov)


def kmeans_pp(z: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ centres: the first uniformly, each next one with probability proportional to
    its squared distance from the nearest centre so far."""
    centres = [z[torch.randint(z.shape[0], (1,), generator=generator)].squeeze(0)]
    for _ in range(1, k):
        d2 = torch.cdist(z, torch.stack(centres)).square().min(1).values
        pick = torch.multinomial(d2 / d2.sum(), 1, generator=generator) if d2.sum() > 0 else torch.randint(
            z.shape[0], (1,), generator=generator)
        centres.append(z[pick].squeeze(0))
    return torch.stack(centres)


def initial_mixture(z: Tensor, k: int, covariance: Covariance, floor: float, generator: torch.Generator) -> Mixture:
    """Hard assignments to the nearest k-means++ centre (drawn from every rank's points, the
    same on every rank), then one M step."""
    nearest = torch.cdist(z, kmeans_pp(collective.gather_rows(z), k, generator)).argmin(1)
    return maximise(z, torch.nn.functional.one_hot(nearest, k).to(z.dtype), covariance, floor)


def em(z: Tensor, start: Mixture, covariance: Covariance, floor: float, iterations: int,
       tolerance: float = 0.0) -> tuple[Mixture, list[float]]:
    """EM from ``start``: per iteration an E step (whose mean log-likelihood is recorded) and an
    M step; stops after ``iterations`` or when the gain falls below ``tolerance``."""
    mixture, history = start, []
    for _ in range(iterations):
        log_joint = mixture.component_log_probs(z)
        history.append(mean_over_ranks(torch.logsumexp(log_joint, 1)))
        if len(history) > 1 and history[-1] - history[-2] < tolerance:
            break
        mixture = maximise(z, log_joint.softmax(1), covariance, floor)
    return mixture, history


def fit_mixture(z: Tensor, k: int, covariance: Covariance, *, floor: float = 1e-6, iterations: int = 200,
                restarts: int = 3, tolerance: float = 1e-7, seed: int = 0) -> tuple[Mixture, list[float]]:
    """The best of ``restarts`` EM runs from k-means++ starts, and its log-likelihood history."""
    z = z.double()
    runs = []
    for restart in range(restarts):
        generator = torch.Generator().manual_seed(seed + restart)
        fitted, history = em(z, initial_mixture(z, k, covariance, floor, generator), covariance, floor,
                             iterations, tolerance)
        runs.append((fitted.mean_log_likelihood(z), fitted, history))
    final, fitted, history = max(runs, key=lambda run: run[0])
    return fitted, [*history, final]
