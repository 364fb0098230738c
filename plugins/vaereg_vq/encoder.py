"""The vector-quantizing encoder and its point-mass posterior."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torch import Tensor, nn

from vaereg import Context, DataSpec, Encoder, LatentSpec, Range, context_bias, discrete
from vaereg.codes import QuantizedPosterior, Quantizer
from vaereg.nets import DownStack, halvings


@dataclass
class VQConfig:
    """``codes``: codebook size. ``downsample``: halvings from the image to the code map
    (default: until at most 4x4, at least one). ``restart_below``: EMA count under which a code
    is restarted."""

    codes: Annotated[int, Range(2, 65536)] = 32
    embed_dim: Annotated[int, Range(1, 1024)] = 16
    width: Annotated[int, Range(1, 1024)] = 64
    downsample: Annotated[int, Range(0, 10)] | None = None
    commitment: Annotated[float, Range(0, 1e3)] = 0.25
    ema: bool = True
    decay: Annotated[float, Range(0, 1)] = 0.99
    epsilon: Annotated[float, Range(0, 1, open_low=True)] = 1e-5
    restart_below: Annotated[float, Range(0, 1e6)] = 0.01


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
        self.quantizer = Quantizer(
            config.codes, config.embed_dim, ema=config.ema, decay=config.decay,
            epsilon=config.epsilon, restart_below=config.restart_below,
        )

    def forward(self, x: Tensor, context: Context) -> QuantizedPosterior:
        z_e = self.project(self.condition(self.trunk(x), context))
        indices, e = self.quantizer.quantize(z_e, update=self.training)
        return QuantizedPosterior(self.latent, [z_e], [indices], [e], commitment=self.config.commitment,
                                  codebook_loss=not self.config.ema)

    def embed(self, z: Tensor, context: Context) -> Tensor:
        return self.quantizer.lookup(z)
