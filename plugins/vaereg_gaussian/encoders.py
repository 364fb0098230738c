"""Diagonal-Gaussian encoders q(z | x, y) = N(mu, diag sigma^2) over a latent vector, and the
deterministic encoder z = f(x) of autoencoders; a class label, when the model is conditioned on
one, is added to the last hidden layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torch import Tensor, nn

from vaereg import Context, DataSpec, DiagonalGaussian, Encoder, LatentSpec, PointMass, Range, context_bias, continuous
from vaereg.nets import conv_features


@dataclass
class GaussianEncoderConfig:
    latent_dim: Annotated[int, Range(1, 4096)] = 16
    width: Annotated[int, Range(1, 1024)] = 64


class _GaussianEncoder(Encoder):
    Config = GaussianEncoderConfig
    posterior = DiagonalGaussian
    trunk: nn.Module
    condition: nn.Module
    head: nn.Linear

    @classmethod
    def latent_spec(cls, data: DataSpec, config: GaussianEncoderConfig) -> LatentSpec:
        return continuous(config.latent_dim)

    def forward(self, x: Tensor, context: Context) -> DiagonalGaussian:
        mean, log_std = self.head(self.condition(self.trunk(x), context)).chunk(2, dim=1)
        return DiagonalGaussian(mean, log_std.clamp(-9.0, 5.0))


class ConvGaussianEncoder(_GaussianEncoder):
    """Strided 3x3 convolutions down to at most 4x4, then a linear map to (mu, log sigma)."""

    outputs = 2  # per latent dimension

    def __init__(self, data: DataSpec, latent: LatentSpec, config: GaussianEncoderConfig):
        super().__init__(data, latent, config)
        self.trunk, self.condition, features = conv_features(data, config.width)
        self.head = nn.Linear(features, self.outputs * config.latent_dim)


class DeterministicEncoder(ConvGaussianEncoder):
    """The conv encoder's network mapping each image to one latent z = f(x): a point mass, as
    in plain, regularised (RAE), Wasserstein (WAE) and adversarial (AAE) autoencoders."""

    posterior = PointMass
    outputs = 1

    def forward(self, x: Tensor, context: Context) -> PointMass:
        return PointMass(self.head(self.condition(self.trunk(x), context)))


class MLPGaussianEncoder(_GaussianEncoder):
    """Two hidden layers of ``width * 8`` units."""

    def __init__(self, data: DataSpec, latent: LatentSpec, config: GaussianEncoderConfig):
        super().__init__(data, latent, config)
        hidden = config.width * 8
        self.trunk = nn.Sequential(
            nn.Flatten(),
            nn.Linear(data.dims, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )
        self.condition = context_bias(data, hidden)
        self.head = nn.Linear(hidden, 2 * config.latent_dim)
