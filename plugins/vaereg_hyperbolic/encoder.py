"""The encoder of the Poincare VAE (Mathieu et al. 2019, sec. 3.3): the conv Gaussian encoder's
trunk, then mu = exp_0(h_mu) on the ball and sigma = exp(h_sigma) in the tangent space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torch import Tensor, nn

from vaereg import Context, DataSpec, Encoder, LatentSpec, Range, continuous
from vaereg.nets import conv_features
from vaereg.parts import ForVector
from vaereg_hyperbolic.ball import PoincareBall
from vaereg_hyperbolic.wrapped import WrappedNormal

#: log sigma's range: sigma <= e keeps draws a float32-representable distance from mu.
LOG_STD_RANGE = (-9.0, 1.0)


@dataclass
class PoincareEncoderConfig:
    """``latent_dim``: d, 10 (one of Mathieu et al.'s MNIST sizes, 2/5/10/20, ample for digits);
    ``width`` as the conv Gaussian encoder's; ``curvature``: c of the ball B_c^d (curvature -c),
    which the wrapped-normal prior shares."""

    latent_dim: Annotated[int, Range(1, 4096)] = 10
    width: Annotated[int, Range(1, 1024)] = 64
    curvature: Annotated[float, Range(0.0, 100.0, open_low=True)] = 1.0


class PoincareEncoder(ForVector, Encoder):
    """Strided 3x3 convolutions down to at most 4x4, a linear map to (h_mu, log sigma), and
    mu = exp_0(h_mu): a wrapped normal on the ball. ``ball`` is the ball the latent lives on."""

    Config = PoincareEncoderConfig
    posterior = WrappedNormal

    @classmethod
    def latent_spec(cls, data: DataSpec, config: PoincareEncoderConfig) -> LatentSpec:
        return continuous(config.latent_dim)

    def __init__(self, data: DataSpec, latent: LatentSpec, config: PoincareEncoderConfig):
        super().__init__(data, latent, config)
        self.ball = PoincareBall(config.curvature)
        self.trunk, self.condition, features = conv_features(data, config.width)
        self.head = nn.Linear(features, 2 * config.latent_dim)

    def forward(self, x: Tensor, context: Context) -> WrappedNormal:
        tangent, log_std = self.head(self.condition(self.trunk(x), context)).chunk(2, dim=1)
        return WrappedNormal(self.ball.expmap0(tangent), log_std.clamp(*LOG_STD_RANGE), self.ball)
