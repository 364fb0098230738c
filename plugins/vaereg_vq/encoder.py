"""The vector-quantizing encoder and its point-mass posterior."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torch import Tensor, nn

from vaereg import Context, DataSpec, Encoder, LatentSpec, Range, context_bias, discrete
from vaereg.codes import CodebookConfig, QuantizedPosterior
from vaereg.nets import DownStack, halvings


@dataclass
class VQConfig(CodebookConfig):
    """The shared codebook options, plus ``width`` of the convolutions and ``downsample``:
    halvings from the image to the code map (default: until at most 4x4, at least one)."""

    width: Annotated[int, Range(1, 1024)] = 64
    downsample: Annotated[int, Range(0, 10)] | None = None


def code_grid(data: DataSpec, config: VQConfig) -> list[tuple[int, int]]:
    if config.downsample is not None:
        return halvings(data.height, data.width, steps=config.downsample)
    sizes = halvings(data.height, data.width)
    return sizes if len(sizes) > 1 else halvings(data.height, data.width, steps=1)


class VQEncoder(Encoder):
    """Strided convolutions to a code map (a class label, when the model is conditioned on one,
    added to its features), a 1x1 projection to ``embed_dim``, then quantization."""

    Config = VQConfig
    posterior = QuantizedPosterior

    @classmethod
    def latent_spec(cls, data: DataSpec, config: VQConfig) -> LatentSpec:
        h, w = code_grid(data, config)[-1]
        return discrete(config.codes, config.embed_dim, h, w)

    def __init__(self, data: DataSpec, latent: LatentSpec, config: VQConfig):
        super().__init__(data, latent, config)
        self.config, self.latent = config, latent
        self.trunk = DownStack(data.channels, config.width, code_grid(data, config))
        self.condition = context_bias(data, config.width, *latent.shape)  # a bias map per class
        self.project = nn.Conv2d(config.width, config.embed_dim, 1)
        self.quantizer = config.quantizer()

    def forward(self, x: Tensor, context: Context) -> QuantizedPosterior:
        z_e = self.project(self.condition(self.trunk(x), context))
        indices, e = self.quantizer.quantize(z_e, update=self.training)
        return self.config.posterior(self.latent, [z_e], [indices], [e])

    def embed(self, z: Tensor, context: Context) -> Tensor:
        return self.quantizer.lookup(z)
