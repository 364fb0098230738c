"""What the learned mixtures (``mog``, ``vamp``) share: a mixture of diagonal Gaussians over a
latent vector, given its components' means and log standard deviations ``[K, D]``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaereg.gaussian import normal_log_prob


def mixture_log_prob(z: Tensor, means: Tensor, log_stds: Tensor, log_weights: Tensor | None = None) -> Tensor:
    """log sum_k pi_k N(z; mu_k, diag sigma_k^2) per row of ``z`` ``[N, D]``, with log pi_k per
    row in ``log_weights`` ``[N, K]``, or equal weights 1/K when it is None."""
    per = normal_log_prob(z[:, None], means[None], log_stds[None]).sum(2)
    if log_weights is None:
        return torch.logsumexp(per, 1) - math.log(means.shape[0])
    return torch.logsumexp(per + log_weights, 1)


def draw(means: Tensor, log_stds: Tensor, pick: Tensor) -> Tensor:
    """One draw from component ``pick[i]`` for each i (``pick`` ``[n]`` -> ``[n, D]``)."""
    return means[pick] + torch.randn_like(means[pick]) * log_stds[pick].exp()
