"""The PixelCNN in its two roles: a prior over a discrete code map, fitted after the
autoencoder, and an autoregressive likelihood over pixels conditioned on decoder features
(PixelVAE, Gulrajani et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from vaereg import DataSpec, LatentSpec, Likelihood, Prior
from vaereg.parts import to_levels
from vaereg_pixelcnn.network import GatedPixelCNN


@dataclass
class PixelCNNConfig:
    width: int = 32
    layers: int = 5
    kernel: int = 3


@dataclass
class PixelCNNLikelihoodConfig(PixelCNNConfig):
    features: int = 32  # channels of decoder features conditioning every gate


class PixelCNNPrior(Prior):
    """Categorical over the K codes at each position given the codes before it."""

    Config = PixelCNNConfig
    fits = frozenset({"discrete"})
    stage = 2

    def __init__(self, data: DataSpec, latent: LatentSpec, config: PixelCNNConfig):
        super().__init__(data, latent, config)
        self.shape = latent.shape
        self.net = GatedPixelCNN(latent.codes, 1, 0, config.width, config.layers, config.kernel)

    def log_prob(self, z: Tensor) -> Tensor:
        return self.net.log_prob(z.unsqueeze(1))

    def sample(self, n: int) -> Tensor:
        return self.net.sample(n, *self.shape)[:, 0]


class PixelCNNLikelihood(Likelihood):
    """Categorical over the data's levels at each pixel given the pixels before it and the
    decoder's feature map; the channels of one pixel are predicted together."""

    Config = PixelCNNLikelihoodConfig
    fits = frozenset({"continuous"})

    def __init__(self, data: DataSpec, latent: LatentSpec, config: PixelCNNLikelihoodConfig):
        super().__init__(data, latent, config)
        self.levels, self.features = data.levels, config.features
        self.net = GatedPixelCNN(data.levels, data.channels, config.features, config.width, config.layers,
                                 config.kernel)

    def param_channels(self) -> int:
        return self.features

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        return self.net.log_prob(to_levels(x, self.levels), params)

    def sample(self, params: Tensor) -> Tensor:
        n, _, height, width = params.shape
        return self.net.sample(n, height, width, params).float() / (self.levels - 1)
