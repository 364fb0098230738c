"""The standard-normal prior N(0, I)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaereg import DataSpec, LatentSpec, NoOptions, Posterior, Prior
from vaereg_gaussian.encoders import DiagonalGaussian


class StandardNormal(Prior):
    """N(0, I) over a continuous latent, with the closed-form KL to a diagonal Gaussian."""

    fits = frozenset({"continuous"})

    def __init__(self, data: DataSpec, latent: LatentSpec, config: NoOptions):
        super().__init__(data, latent, config)
        self.shape = latent.shape
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # follows .to(device)

    def log_prob(self, z: Tensor) -> Tensor:
        return (-0.5 * z.square() - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)

    def sample(self, n: int) -> Tensor:
        return torch.randn((n, *self.shape), device=self.anchor.device)

    def kl(self, posterior: Posterior) -> Tensor | None:
        if not isinstance(posterior, DiagonalGaussian):
            return None
        # KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1) / 2 - log s, per dimension
        mean, log_std = posterior.mean, posterior.log_std
        return 0.5 * (mean.square() + torch.exp(2 * log_std) - 1) - log_std
