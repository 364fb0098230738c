"""The vector-quantizing encoder and its point-mass posterior."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from vaereg import DataSpec, Encoder, LatentSpec, discrete
from vaereg.codes import QuantizedPosterior, Quantizer
from vaereg.nets import DownStack, halvings


@dataclass
class VQConfig:
    """``downsample``: halvings from the image to the code map (default: until at most 4x4,
    at least one). ``restart_below``: EMA count under which a code is restarted."""

    codes: int = 32
    embed_dim: int = 16
    width: int = 64
    downsample: int | None = None
    commitment: float = 0.25
    ema: bool = True
    decay: float = 0.99
    epsilon: float = 1e-5
    restart_below: float = 0.01


def code_grid(data: DataSpec, config: VQConfig) -> list[tuple[int, int]]:
    if config.downsample is not None:
        return halvings(data.height, data.width, steps=config.downsample)
    sizes = halvings(data.height, data.width)
    return sizes if len(sizes) > 1 else halvings(data.height, data.width, steps=1)


class VQEncoder(Encoder):
    """Strided convolutions to a code map, a 1x1 projection to ``embed_dim``, then quantization."""

    Config = VQConfig
    produces = "discrete"

    @classmethod
    def latent_spec(cls, data: DataSpec, config: VQConfig) -> LatentSpec:
        h, w = code_grid(data, config)[-1]
        return discrete(config.codes, config.embed_dim, h, w)

    def __init__(self, data: DataSpec, latent: LatentSpec, config: VQConfig):
        super().__init__(data, latent, config)
        self.config, self.latent = config, latent
        self.net = nn.Sequential(
            DownStack(data.channels, config.width, code_grid(data, config)),
            nn.Conv2d(config.width, config.embed_dim, 1),
        )
        self.quantizer = Quantizer(
            config.codes, config.embed_dim, ema=config.ema, decay=config.decay,
            epsilon=config.epsilon, restart_below=config.restart_below,
        )

    def forward(self, x: Tensor) -> QuantizedPosterior:
        z_e = self.net(x)
        codes, e = self.quantizer.quantize(z_e, update=self.training)
        return QuantizedPosterior(self.latent, [z_e], [codes], [e], commitment=self.config.commitment,
                                  codebook_loss=not self.config.ema)

    def embed(self, z: Tensor) -> Tensor:
        return self.quantizer.lookup(z)


