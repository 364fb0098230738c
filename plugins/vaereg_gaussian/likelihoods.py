"""Likelihoods normalised over the data's discrete intensities; the context reaches them through
the decoder's parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from vaereg import Context, DataSpec, LatentSpec, Likelihood, NoOptions, Range
from vaereg.gaussian import normal_log_prob
from vaereg.parts import intensity_index


# torch's CPU logsigmoid and expm1 run as scalar loops (6-8x slower than sigmoid, exp, log and tanh,
# which are vectorised); these two are as exact in float32 and give exact gradients.
def log_sigmoid(x: Tensor) -> Tensor:
    """log sigmoid(x): log of the vectorised sigmoid; below -80 it is x (the rest is e^-80)."""
    return torch.where(x < -80, x, torch.log(torch.sigmoid(x.clamp(min=-81))))  # no clamp at -80 itself


def one_minus_exp(d: Tensor) -> Tensor:
    """1 - e^d for d <= 0, to float32's relative precision even as d -> 0:
    1 - e^d = -2 e^(d/2) sinh(d/2), with sinh(d/2) = 2t / (1 - t^2) for t = tanh(d/4)."""
    near = d.clamp(min=-1)  # the branch not taken stays finite, and so does its gradient
    t = torch.tanh(near / 4)
    return torch.where(d > -1, -4 * t * torch.exp(near / 2) / (1 - t * t), 1 - torch.exp(d))

class Bernoulli(Likelihood):
    """Independent Bernoulli pixels; binary data only."""

    def __init__(self, data: DataSpec, latent: LatentSpec, config: NoOptions):
        super().__init__(data, latent, config)
        self.channels = data.channels

    @classmethod
    def mismatch(cls, data: DataSpec, latent: LatentSpec, config: object) -> str | None:
        if data.intensities != 2:
            return (
                f"needs binary data (2 intensities) but {data.describe()} has {data.intensities}; "
                f"use dlogistic, or binarized data"
            )
        return super().mismatch(data, latent, config)

    def param_channels(self) -> int:
        return self.channels

    def log_prob(self, x: Tensor, params: Tensor, context: Context) -> Tensor:
        bce = F.binary_cross_entropy_with_logits(params.float(), x.float(), reduction="none")
        return -bce.flatten(1).sum(1)

    def sample(self, params: Tensor, context: Context) -> Tensor:
        return torch.bernoulli(torch.sigmoid(params.float()))

    def mean(self, params: Tensor, context: Context) -> Tensor:
        return torch.sigmoid(params.float())


@dataclass
class LogisticMixtureConfig:
    mixtures: Annotated[int, Range(1, 64)] = 5


class DiscretizedLogistic(Likelihood):
    """A mixture of logistics per channel, discretized over the data's intensities
    (Salimans et al. 2017, PixelCNN++). Intensity k of L is the bin of width 2/(L-1) centred on
    2k/(L-1) - 1; the first and last bins extend to -inf and +inf, so the masses telescope to
    exactly 1. Edges are picked by integer intensity, never by comparing floats to +-0.999."""

    Config = LogisticMixtureConfig

    def __init__(self, data: DataSpec, latent: LatentSpec, config: LogisticMixtureConfig):
        super().__init__(data, latent, config)
        self.channels, self.intensities, self.mixtures = data.channels, data.intensities, config.mixtures

    def param_channels(self) -> int:
        return 3 * self.mixtures * self.channels

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n, _, h, w = params.shape
        logits, means, log_scales = params.float().view(n, 3, self.channels, self.mixtures, h, w).unbind(1)
        return logits, means, log_scales.clamp(min=-7.0)

    def log_prob(self, x: Tensor, params: Tensor, context: Context) -> Tensor:
        logits, means, log_scales = self._split(params)
        k = intensity_index(x, self.intensities).unsqueeze(2)  # [N, C, 1, H, W]
        half = 1.0 / (self.intensities - 1)
        centre = 2 * half * k - 1
        inv_s = torch.exp(-log_scales)
        plus = (centre + half - means) * inv_s
        minus = (centre - half - means) * inv_s
        # log(sigmoid(a) - sigmoid(b)) = logsig(a) + logsig(-b) + log(1 - e^(b - a)), stable for a > b;
        # the edge bins are its first two terms alone (each computed once)
        below, above = log_sigmoid(plus), log_sigmoid(-minus)
        interior = below + above + torch.log(one_minus_exp(minus - plus))
        log_p = torch.where(k == 0, below, torch.where(k == self.intensities - 1, above, interior))
        mixed = torch.logsumexp(log_p + F.log_softmax(logits, dim=2), dim=2)
        return mixed.flatten(1).sum(1)

    def sample(self, params: Tensor, context: Context) -> Tensor:
        logits, means, log_scales = self._split(params)
        pick = F.one_hot(torch.distributions.Categorical(logits=logits.movedim(2, -1)).sample(), self.mixtures)
        pick = pick.movedim(-1, 2).float()
        mean, log_scale = (means * pick).sum(2), (log_scales * pick).sum(2)
        u = torch.rand_like(mean).clamp(1e-5, 1 - 1e-5)
        y = mean + log_scale.exp() * (torch.log(u) - torch.log1p(-u))
        k = torch.round((y + 1) / 2 * (self.intensities - 1)).clamp(0, self.intensities - 1)
        return k / (self.intensities - 1)

    def mean(self, params: Tensor, context: Context) -> Tensor:
        """The mixture's mean location per pixel, from [-1, 1] to [0, 1] (the edge bins' mass
        beyond [-1, 1] is clipped, as in the discretisation)."""
        logits, means, _ = self._split(params)
        return ((logits.softmax(2) * means).sum(2).clamp(-1, 1) + 1) / 2


class DequantizedGaussian(Likelihood):
    """A Gaussian density with learned variance over uniformly dequantized data
    y = (k + u) / L, u ~ U(0, 1). log p(k) >= E_u[log p(y)] - log L per dimension (Theis et al. 2016),
    so the returned value is a stochastic lower bound on the discrete log-likelihood."""

    def __init__(self, data: DataSpec, latent: LatentSpec, config: NoOptions):
        super().__init__(data, latent, config)
        self.channels, self.intensities = data.channels, data.intensities

    def param_channels(self) -> int:
        return 2 * self.channels

    def log_prob(self, x: Tensor, params: Tensor, context: Context) -> Tensor:
        mean, log_std = params.float().chunk(2, dim=1)
        log_std = log_std.clamp(-7.0, 2.0)
        y = (intensity_index(x, self.intensities) + torch.rand_like(mean)) / self.intensities
        return (normal_log_prob(y, mean, log_std) - math.log(self.intensities)).flatten(1).sum(1)

    def sample(self, params: Tensor, context: Context) -> Tensor:
        mean, log_std = params.float().chunk(2, dim=1)
        y = mean + log_std.clamp(-7.0, 2.0).exp() * torch.randn_like(mean)
        k = torch.floor(y * self.intensities).clamp(0, self.intensities - 1)
        return k / (self.intensities - 1)

    def mean(self, params: Tensor, context: Context) -> Tensor:
        return params.float().chunk(2, dim=1)[0].clamp(0, 1)
