"""Diagonal-Gaussian densities and KL divergences, per dimension."""

from __future__ import annotations

import math

import torch
from torch import Tensor

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def normal_log_prob(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log N(z; mean, exp(log_std)^2) per dimension."""
    return -0.5 * ((z - mean) * torch.exp(-log_std)).square() - log_std - HALF_LOG_2PI


def gaussian_kl(mean_q: Tensor, log_std_q: Tensor, mean_p: Tensor, log_std_p: Tensor) -> Tensor:
    """KL(N_q || N_p) per dimension, in closed form."""
    var_ratio = torch.exp(2 * (log_std_q - log_std_p))
    return 0.5 * (var_ratio + ((mean_q - mean_p) * torch.exp(-log_std_p)).square() - 1) - (log_std_q - log_std_p)
