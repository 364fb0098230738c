"""The vector-quantizing encoder and its point-mass posterior."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vaereg import DataSpec, Encoder, LatentSpec, Posterior, discrete
from vaereg.codes import Quantizer, codebook_stats
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


class VQPosterior(Posterior):
    """A point mass at the nearest codes; the decoder receives the codes' vectors with the
    straight-through gradient z_e + sg(e - z_e)."""

    deterministic = True

    def __init__(self, encoder: VQEncoder, z_e: Tensor, codes: Tensor, e: Tensor):
        self.encoder, self.z_e, self.codes, self.e = encoder, z_e, codes, e

    def rsample(self, k: int) -> Tensor:
        return self.codes.expand(k, *self.codes.shape)

    def log_prob(self, z: Tensor) -> Tensor:
        return torch.zeros(z.shape[:2], device=z.device)

    def decoder_input(self, z: Tensor) -> Tensor:
        """``z`` is this posterior's own codes (drawn by ``rsample``)."""
        st = self.z_e + (self.e - self.z_e).detach()
        return st.expand(z.shape[0], *st.shape).flatten(0, 1)

    def aux_loss(self) -> Tensor:
        loss = self.encoder.config.commitment * (self.z_e - self.e.detach()).square().flatten(1).sum(1)
        if not self.encoder.config.ema:
            loss = loss + (self.z_e.detach() - self.e).square().flatten(1).sum(1)
        return loss.mean()

    def stats(self) -> dict[str, Tensor]:
        return codebook_stats(self.codes, self.encoder.config.codes)


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
        self.config = config
        self.net = nn.Sequential(
            DownStack(data.channels, config.width, code_grid(data, config)),
            nn.Conv2d(config.width, config.embed_dim, 1),
        )
        self.quantizer = Quantizer(
            config.codes, config.embed_dim, ema=config.ema, decay=config.decay,
            epsilon=config.epsilon, restart_below=config.restart_below,
        )

    def forward(self, x: Tensor) -> VQPosterior:
        z_e = self.net(x)
        flat = z_e.movedim(1, -1).reshape(-1, self.config.embed_dim)
        codes = self.quantizer.assign(flat.detach())
        code_map = codes.view(z_e.shape[0], *z_e.shape[2:])
        e = self.quantizer.lookup(code_map)  # the codebook this step quantized with
        if self.training and self.config.ema:
            self.quantizer.update(flat.detach(), codes)
        return VQPosterior(self, z_e, code_map, e)

    def embed(self, z: Tensor) -> Tensor:
        return self.quantizer.lookup(z)


