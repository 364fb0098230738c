"""An encoder with an inverse autoregressive flow posterior (Kingma et al. 2016): a conv
Gaussian encoder gives z_0 = mu + sigma * eps and a context h; each step updates
z <- g * z + (1 - g) * m with (m, s) = MADE(z, h) and g = sigmoid(s), so
log q(z_T | x) = log N(z_0; mu, sigma) - sum_t sum_i log g_t,i exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor, nn

from vaereg import Context, DataSpec, Encoder, LatentSpec, Range, continuous
from vaereg.gaussian import normal_log_prob
from vaereg.nets import conv_features
from vaereg_flows.flowed import FlowedGaussian
from vaereg_flows.made import alternating, invert

GATE_BIAS = 1.5  # sigmoid(1.5) ~ 0.82: steps start close to the identity (the paper's forget-gate bias)


@dataclass
class IAFConfig:
    """``latent_dim`` and ``width`` as the conv Gaussian encoder's; ``steps`` IAF steps whose
    MADEs have ``hidden`` units."""

    latent_dim: Annotated[int, Range(1, 4096)] = 16
    width: Annotated[int, Range(1, 1024)] = 64
    steps: Annotated[int, Range(1, 64)] = 2
    hidden: Annotated[int, Range(2, 4096)] = 64


class IAFSteps(nn.Module):
    def __init__(self, dim: int, steps: int, hidden: int):
        super().__init__()
        self.steps = alternating(dim, steps, hidden, context_dim=hidden)

    def forward(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """z_T and sum_t sum_i log g_t,i per row."""
        log_gates = z.new_zeros(z.shape[0])
        for step in self.steps:
            m, s = step(z, h)
            z = torch.sigmoid(s + GATE_BIAS) * z + torch.sigmoid(-(s + GATE_BIAS)) * m
            log_gates = log_gates + nn.functional.logsigmoid(s + GATE_BIAS).sum(1)
        return z, log_gates

    def inverse(self, z: Tensor, h: Tensor) -> Tensor:
        """z_0 for a given z_T."""
        return invert(self.steps, z, h, ungate)


def ungate(z: Tensor, m: Tensor, s: Tensor) -> Tensor:
    """The input of one gated update z <- g * z + (1 - g) * m, from its output."""
    g = torch.sigmoid(s + GATE_BIAS)
    return (z - (1 - g) * m) / g


class IAFPosterior(FlowedGaussian):
    """q(z | x) through the IAF steps; scoring a z it did not draw inverts the flow."""

    def __init__(self, mean: Tensor, log_std: Tensor, h: Tensor, flow: IAFSteps):
        super().__init__(mean, log_std)
        self.h, self.flow = h, flow

    def through(self, z0: Tensor) -> tuple[Tensor, Tensor]:
        k = z0.shape[0]
        base = normal_log_prob(z0, self.mean, self.log_std).sum(-1)  # [k, B]
        z, log_gates = self.flow(z0.flatten(0, 1), self.h.repeat(k, 1))
        return z.view(z0.shape), base - log_gates.view(base.shape)

    def score(self, z: Tensor) -> Tensor:
        z0 = self.flow.inverse(z.flatten(0, 1), self.h.repeat(z.shape[0], 1)).view(z.shape)
        return self.through(z0)[1]


class IAFEncoder(Encoder):
    """Strided 3x3 convolutions down to at most 4x4, a linear map to (mu, log sigma) and the
    flow's context, then ``steps`` IAF steps."""

    Config = IAFConfig
    posterior = IAFPosterior

    @classmethod
    def latent_spec(cls, data: DataSpec, config: IAFConfig) -> LatentSpec:
        return continuous(config.latent_dim)

    def __init__(self, data: DataSpec, latent: LatentSpec, config: IAFConfig):
        super().__init__(data, latent, config)
        self.trunk, self.condition, features = conv_features(data, config.width)
        self.head = nn.Linear(features, 2 * config.latent_dim)
        self.to_context = nn.Sequential(nn.Linear(features, config.hidden), nn.SiLU())
        self.flow = IAFSteps(config.latent_dim, config.steps, config.hidden)

    def forward(self, x: Tensor, context: Context) -> IAFPosterior:
        features = self.condition(self.trunk(x), context)
        mean, log_std = self.head(features).chunk(2, dim=1)
        return IAFPosterior(mean, log_std.clamp(-9.0, 5.0), self.to_context(features), self.flow)
