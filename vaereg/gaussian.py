"""Diagonal Gaussians in the core: densities and KL per dimension, the diagonal-Gaussian
posterior any encoder may return, and the N(0, I) prior."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaereg.context import Context
from vaereg.parts import Posterior, Prior
from vaereg.specs import DataSpec, LatentSpec

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def normal_log_prob(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log N(z; mean, exp(log_std)^2) per dimension."""
    return -0.5 * ((z - mean) * torch.exp(-log_std)).square() - log_std - HALF_LOG_2PI


def gaussian_kl(mean_q: Tensor, log_std_q: Tensor, mean_p: Tensor, log_std_p: Tensor) -> Tensor:
    """KL(N_q || N_p) per dimension, in closed form."""
    var_ratio = torch.exp(2 * (log_std_q - log_std_p))
    return 0.5 * (var_ratio + ((mean_q - mean_p) * torch.exp(-log_std_p)).square() - 1) - (log_std_q - log_std_p)


class DiagonalGaussian(Posterior):
    """q(z | x) = N(mean, diag exp(log_std)^2) over a latent of any shape, ``[B, *shape]``.
    Return it from an encoder to get the closed-form KL to N(0, I) without importing a plugin."""

    def __init__(self, mean: Tensor, log_std: Tensor):
        self.mean, self.log_std = mean, log_std

    def rsample(self, k: int) -> Tensor:
        eps = torch.randn((k, *self.mean.shape), device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + eps * self.log_std.exp()

    def log_prob(self, z: Tensor) -> Tensor:
        return normal_log_prob(z, self.mean, self.log_std).flatten(2).sum(2)

    def cross_log_prob(self, z: Tensor) -> Tensor:
        return normal_log_prob(z[:, None], self.mean[None], self.log_std[None])

    def mode(self) -> Tensor:
        return self.mean


class StandardNormal(Prior):
    """N(0, I) over a continuous latent (flat, a map, or a hierarchy's joined levels). The
    stage-1 stand-in for continuous priors fitted after the autoencoder."""

    latent_kinds = frozenset({"continuous", "hierarchical"})

    @classmethod
    def mismatch(cls, data: DataSpec, latent: LatentSpec, config: object) -> str | None:
        if latent.is_codes:
            return f"needs a continuous latent, got a {latent.describe()}"
        return None

    def __init__(self, data: DataSpec, latent: LatentSpec, config: object):
        super().__init__(data, latent, config)
        self.shape = latent.shape
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # follows .to(device)

    def log_prob(self, z: Tensor, context: Context) -> Tensor:
        return (-0.5 * z.square() - HALF_LOG_2PI).flatten(1).sum(1)

    def sample(self, n: int, context: Context) -> Tensor:
        return torch.randn((n, *self.shape), device=self.anchor.device)


def diagonal_to_standard_kl(q: DiagonalGaussian, p: StandardNormal) -> Tensor:
    """KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1) / 2 - log s, per dimension."""
    return 0.5 * (q.mean.square() + torch.exp(2 * q.log_std) - 1) - q.log_std
