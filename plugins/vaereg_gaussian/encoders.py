"""Diagonal-Gaussian encoders q(z|x) = N(mu(x), diag sigma(x)^2) over a latent vector."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vaereg import DataSpec, Encoder, LatentSpec, Posterior, continuous
from vaereg.gaussian import normal_log_prob
from vaereg.nets import DownStack, halvings


class DiagonalGaussian(Posterior):
    def __init__(self, mean: Tensor, log_std: Tensor):
        self.mean, self.log_std = mean, log_std

    def rsample(self, k: int) -> Tensor:
        eps = torch.randn((k, *self.mean.shape), device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + eps * self.log_std.exp()

    def log_prob(self, z: Tensor) -> Tensor:
        return normal_log_prob(z, self.mean, self.log_std).flatten(2).sum(2)


@dataclass
class GaussianEncoderConfig:
    latent_dim: int = 16
    width: int = 64


class _GaussianEncoder(Encoder):
    Config = GaussianEncoderConfig
    produces = "continuous"

    @classmethod
    def latent_spec(cls, data: DataSpec, config: GaussianEncoderConfig) -> LatentSpec:
        return continuous(config.latent_dim)

    def forward(self, x: Tensor) -> DiagonalGaussian:
        mean, log_std = self.net(x).chunk(2, dim=1)
        return DiagonalGaussian(mean, log_std.clamp(-9.0, 5.0))


class ConvGaussianEncoder(_GaussianEncoder):
    """Strided 3x3 convolutions down to at most 4x4, then a linear map to (mu, log sigma)."""

    def __init__(self, data: DataSpec, latent: LatentSpec, config: GaussianEncoderConfig):
        super().__init__(data, latent, config)
        sizes = halvings(data.height, data.width)
        h, w = sizes[-1]
        self.net = nn.Sequential(
            DownStack(data.channels, config.width, sizes),
            nn.Flatten(),
            nn.Linear(config.width * h * w, 2 * config.latent_dim),
        )


class MLPGaussianEncoder(_GaussianEncoder):
    """Two hidden layers of ``width * 8`` units."""

    def __init__(self, data: DataSpec, latent: LatentSpec, config: GaussianEncoderConfig):
        super().__init__(data, latent, config)
        hidden = config.width * 8
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(data.dims, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * config.latent_dim),
        )
