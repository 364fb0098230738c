"""Decoders from a latent vector or map to the likelihood's parameter maps; a class label, when
the model is conditioned on one, is added to the first hidden layer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor, nn

from vaereg import Context, DataSpec, Decoder, LatentSpec, Range, context_bias
from vaereg.nets import Reshape, UpStack, halvings, halvings_to
from vaereg_gaussian.upsampling import run_stack

CACHE_BYTES = 8 * 2**20  # the largest map of a block of rows decoded together without autograd


@dataclass
class DecoderConfig:
    width: Annotated[int, Range(1, 1024)] = 64


class ConvDecoder(Decoder):
    """A latent vector goes through a linear map to a small grid; a latent map (a continuous
    map, or a discrete code map's embedded vectors) enters as is. Then upsampling 3x3
    convolutions back to the image size."""

    Config = DecoderConfig
    latent_kinds = frozenset({"continuous", "discrete"})

    def __init__(self, data: DataSpec, latent: LatentSpec, config: DecoderConfig, out_channels: int):
        super().__init__(data, latent, config, out_channels)
        width = config.width
        if latent.kind == "continuous" and len(latent.shape) == 1:
            sizes = halvings(data.height, data.width)
            h, w = sizes[-1]
            self.stem = nn.Sequential(nn.Linear(latent.shape[0], width * h * w), Reshape(width, h, w))
        else:
            c_in = latent.embed_dim if latent.kind == "discrete" else latent.shape[0]
            sizes = halvings_to(data.height, data.width, tuple(latent.shape[-2:]))
            self.stem = nn.Conv2d(c_in, width, 3, padding=1)
        self.condition = context_bias(data, width, *sizes[-1])  # a bias map per class, like z's own
        self.net = nn.Sequential(nn.SiLU(), UpStack(width, out_channels, sizes))
        self.widest = width * data.height * data.width  # elements per row of the largest map

    def forward(self, z: Tensor, context: Context) -> Tensor:
        h = self.condition(self.stem(z), context)
        if h.device.type != "cpu":
            return self.net(h)  # the fused form is measured on CPUs only
        # on a CPU each upsampling and the convolution after it are done on the small map (a training
        # step 1.12x faster); without autograd (evaluation, sampling) rows also go through in blocks
        # whose widest map stays in cache (together about 2x faster at 28x28: benchmarks/RESULTS.md)
        if h.requires_grad:
            return run_stack(self.net, h)
        rows = max(1, CACHE_BYTES // (self.widest * h.element_size()))
        return torch.cat([run_stack(self.net, block) for block in h.split(rows)])


class MLPDecoder(Decoder):
    """Two hidden layers of ``width * 8`` units from a latent vector."""

    Config = DecoderConfig
    latent_kinds = frozenset({"continuous"})

    def __init__(self, data: DataSpec, latent: LatentSpec, config: DecoderConfig, out_channels: int):
        super().__init__(data, latent, config, out_channels)
        hidden = config.width * 8
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(latent.shape), hidden))
        self.condition = context_bias(data, hidden)
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, out_channels * data.height * data.width),
            Reshape(out_channels, data.height, data.width),
        )

    def forward(self, z: Tensor, context: Context) -> Tensor:
        return self.net(self.condition(self.stem(z), context))
