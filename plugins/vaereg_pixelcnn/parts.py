"""The PixelCNN in its two roles: a prior over discrete code maps, fitted by gradient on the
frozen encoder's codes after the autoencoder, and an autoregressive likelihood over pixels
conditioned on decoder features (PixelVAE, Gulrajani et al. 2017). Both take a class label
when the model is conditioned on one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch.nn.functional as F
from torch import Tensor, nn

from vaereg import Context, DataSpec, LatentSpec, Likelihood, Prior, Range
from vaereg.parts import ForCodes, intensity_index
from vaereg_pixelcnn.network import GatedPixelCNN


@dataclass
class PixelCNNConfig:
    width: Annotated[int, Range(1, 512)] = 32
    layers: Annotated[int, Range(1, 64)] = 5
    kernel: Annotated[int, Range(2, 15)] = 3

    def __post_init__(self) -> None:
        # the vertical stack pads k//2 columns on each side of a k-wide kernel: only an odd k has a centre
        # column and keeps the map's width (an even one loses a column and fails after the autoencoder)
        if self.kernel % 2 == 0:
            odd = " or ".join(str(k) for k in (self.kernel - 1, self.kernel + 1) if k >= 3)
            raise ValueError(f"kernel={self.kernel} is even; the masked kernel needs an odd size such as {odd}")


@dataclass
class PixelCNNLikelihoodConfig(PixelCNNConfig):
    features: Annotated[int, Range(1, 512)] = 32  # channels of decoder features conditioning every gate


class PixelCNNPrior(ForCodes, Prior):
    """Categorical over the K codes at each position given the codes before it. Over a
    hierarchy of code maps (VQ-VAE-2) one PixelCNN per level, each below the top conditioned
    on the level above (its codes embedded and resized to this level's grid):
    p(z) = p(z_L) prod_l p(z_l | z_{l+1})."""

    Config = PixelCNNConfig
    schedule = "gradient"

    def __init__(self, data: DataSpec, latent: LatentSpec, config: PixelCNNConfig):
        super().__init__(data, latent, config)
        self.latent, self.levels = latent, latent.as_levels()
        cond = config.width
        self.nets = nn.ModuleList(
            GatedPixelCNN(level.codes, 1, cond if i < len(self.levels) - 1 else 0, config.width, config.layers,
                          config.kernel, data.classes)
            for i, level in enumerate(self.levels)
        )
        self.conditions = nn.ModuleList(nn.Embedding(above.codes, cond) for above in self.levels[1:])

    def _condition(self, i: int, maps: list[Tensor]) -> Tensor | None:
        """Level ``i``'s conditioning map: the level above, embedded and resized (nearest)."""
        if i == len(self.levels) - 1:
            return None
        above = self.conditions[i](maps[i + 1]).movedim(-1, 1)
        return F.interpolate(above, size=self.levels[i].shape, mode="nearest")

    def log_prob(self, z: Tensor, context: Context) -> Tensor:
        maps = self.latent.split(z)
        return sum(net.log_prob(m.unsqueeze(1), self._condition(i, maps), context.label)
                   for i, (net, m) in enumerate(zip(self.nets, maps, strict=True)))

    def sample(self, n: int, context: Context) -> Tensor:
        maps: list[Tensor] = [None] * len(self.levels)  # type: ignore[list-item]
        for i in reversed(range(len(self.levels))):
            maps[i] = self.nets[i].sample(n, *self.levels[i].shape, self._condition(i, maps), context.label)[:, 0]
        return self.latent.join(maps)


class PixelCNNLikelihood(Likelihood):
    """Categorical over the data's intensities at each pixel given the pixels before it and the
    decoder's feature map; the channels of one pixel are predicted together. It serves any
    latent; a bare ``pixelcnn`` lands here for continuous latents and on the prior for codes."""

    Config = PixelCNNLikelihoodConfig

    @classmethod
    def claims(cls, latent: LatentSpec) -> bool:
        return not latent.is_codes

    def __init__(self, data: DataSpec, latent: LatentSpec, config: PixelCNNLikelihoodConfig):
        super().__init__(data, latent, config)
        self.intensities, self.features = data.intensities, config.features
        self.net = GatedPixelCNN(data.intensities, data.channels, config.features, config.width, config.layers,
                                 config.kernel, data.classes)

    def param_channels(self) -> int:
        return self.features

    def log_prob(self, x: Tensor, params: Tensor, context: Context) -> Tensor:
        return self.net.log_prob(intensity_index(x, self.intensities), params, context.label)

    def sample(self, params: Tensor, context: Context) -> Tensor:
        n, _, height, width = params.shape
        return self.net.sample(n, height, width, params, context.label).float() / (self.intensities - 1)
