"""Two-level VQ-VAE-2 codes (Razavi et al. 2019): a top code map at half the bottom map's
resolution, and a bottom map whose encoder sees the top codes. The decoder reads both.

A code sample is the hierarchy's flat form (bottom positions, then top). What the decoder
receives is ``[N, embed_dim, positions]``: each level's code vectors, joined the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor, nn

from vaereg import Context, DataSpec, Decoder, Encoder, LatentSpec, Range, context_bias, discrete
from vaereg.codes import CodebookConfig, QuantizedPosterior
from vaereg.nets import DownStack, UpStack, halvings, halvings_to
from vaereg.specs import hierarchy


@dataclass
class VQ2Config(CodebookConfig):
    """The shared codebook options (one codebook per level) and ``width`` of the convolutions.
    The bottom map is the image halved until at most 4x4, the top map one halving more."""

    width: Annotated[int, Range(1, 1024)] = 64


def grids(data: DataSpec) -> list[tuple[int, int]]:
    """Sizes from the image to the bottom map, then the top map."""
    sizes = halvings(data.height, data.width)
    if len(sizes) == 1:
        sizes = halvings(data.height, data.width, steps=1)
    h, w = sizes[-1]
    return [*sizes, halvings(h, w, steps=1)[-1]]


class VQ2Encoder(Encoder):
    """Strided convolutions to the bottom grid, one more to the top grid; the top codes are
    quantized first, decoded back to the bottom grid and joined with the bottom features."""

    Config = VQ2Config
    posterior = QuantizedPosterior

    @classmethod
    def latent_spec(cls, data: DataSpec, config: VQ2Config) -> LatentSpec:
        *_, bottom, top = grids(data)
        return hierarchy(discrete(config.codes, config.embed_dim, *bottom),
                         discrete(config.codes, config.embed_dim, *top))

    def __init__(self, data: DataSpec, latent: LatentSpec, config: VQ2Config):
        super().__init__(data, latent, config)
        self.config, self.latent = config, latent
        sizes = grids(data)
        width, dim = config.width, config.embed_dim
        self.bottom_up = DownStack(data.channels, width, sizes[:-1])
        self.condition = context_bias(data, width, *sizes[-2])  # a bias map per class
        self.to_top = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU(),
                                    nn.Conv2d(width, dim, 1))
        self.top_to_bottom = nn.Sequential(nn.Upsample(size=sizes[-2]), nn.Conv2d(dim, width, 3, padding=1), nn.SiLU())
        self.to_bottom = nn.Conv2d(2 * width, dim, 1)
        self.quantizers = nn.ModuleList(config.quantizer() for _ in range(2))

    def forward(self, x: Tensor, context: Context) -> QuantizedPosterior:
        bottom, top = self.quantizers
        h = self.condition(self.bottom_up(x), context)
        z_top = self.to_top(h)
        top_indices, e_top = top.quantize(z_top, update=self.training)
        z_bottom = self.to_bottom(torch.cat([h, self.top_to_bottom(e_top)], 1))
        bottom_indices, e_bottom = bottom.quantize(z_bottom, update=self.training)
        return self.config.posterior(self.latent, [z_bottom, z_top], [bottom_indices, top_indices], [e_bottom, e_top])

    def embed(self, z: Tensor, context: Context) -> Tensor:
        return self.latent.join([q.lookup(c) for q, c in zip(self.quantizers, self.latent.split(z), strict=True)])


@dataclass
class VQ2DecoderConfig:
    width: Annotated[int, Range(1, 1024)] = 64


class VQ2Decoder(Decoder):
    """The top code vectors upsampled to the bottom grid, joined with the bottom vectors, then
    upsampling convolutions to the image."""

    Config = VQ2DecoderConfig
    latent_kinds = frozenset({"hierarchical"})

    @classmethod
    def mismatch(cls, data: DataSpec, latent: LatentSpec, config: object) -> str | None:
        if not latent.is_codes or len(latent.levels) != 2:
            return f"needs two levels of codes (bottom, top), got a {latent.describe()}"
        return None

    def __init__(self, data: DataSpec, latent: LatentSpec, config: VQ2DecoderConfig, out_channels: int):
        super().__init__(data, latent, config, out_channels)
        self.latent = latent
        bottom, top = latent.levels
        width = config.width
        self.top = nn.Sequential(nn.Upsample(size=bottom.shape), nn.Conv2d(top.embed_dim, width, 3, padding=1),
                                 nn.SiLU())
        self.stem = nn.Conv2d(bottom.embed_dim + width, width, 3, padding=1)
        self.condition = context_bias(data, width, *bottom.shape)
        self.net = nn.Sequential(nn.SiLU(), UpStack(width, out_channels, halvings_to(data.height, data.width,
                                                                                   bottom.shape)))

    def forward(self, z: Tensor, context: Context) -> Tensor:
        bottom, top = self.latent.split(z)
        return self.net(self.condition(self.stem(torch.cat([bottom, self.top(top)], 1)), context))
