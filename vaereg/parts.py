"""The four part contracts and the posterior a encoder returns.

Every part is a ``torch.nn.Module`` built from ``(data, latent, config)``, where ``config`` is an
instance of the part's own ``Config`` dataclass: the constructor arguments are the serialisable
config, so a checkpoint rebuilds any model from JSON and a state dict.

Images reach parts as floats ``level / (levels - 1)`` in ``[0, 1]``, shape ``[N, C, H, W]``.
A latent sample ``z`` has shape ``[k, B, *latent.shape]`` for ``k`` draws per image; parts
that score or decode latents see them flattened to ``[k * B, *latent.shape]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from vaereg.specs import LATENT_KINDS, DataSpec, LatentSpec

SLOTS: tuple[str, ...] = ("encoder", "decoder", "prior", "likelihood")


@dataclass
class NoOptions:
    """Config of a part that takes no options."""


class Part(nn.Module):
    """Base of every part: its slot, its options and the latent kinds it works with."""

    slot: ClassVar[str]
    Config: ClassVar[type] = NoOptions
    fits: ClassVar[frozenset[str]] = LATENT_KINDS

    def __init__(self, data: DataSpec, latent: LatentSpec, config: object):
        super().__init__()

    @classmethod
    def misfit(cls, data: DataSpec, latent: LatentSpec, config: object) -> str | None:
        """Why this part cannot serve ``data`` and ``latent``, or None when it can."""
        if latent.kind not in cls.fits:
            kinds = "/".join(sorted(cls.fits))
            return f"needs a {kinds} latent, got a {latent.describe()}"
        return None


class Posterior:
    """q(z | x) for a batch of B images."""

    #: A point mass (vector quantization): log q = 0 and the NLL is a bound, not an estimate.
    deterministic: ClassVar[bool] = False

    def rsample(self, k: int) -> Tensor:
        """Draw ``k`` reparameterised samples per image: ``[k, B, *shape]``."""
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z | x) summed over latent dimensions: ``[k, B]``."""
        raise NotImplementedError

    def decoder_input(self, z: Tensor) -> Tensor:
        """What the decoder consumes for ``z`` (flattened to ``[k * B, ...]``)."""
        return z.flatten(0, 1)

    def aux_loss(self) -> Tensor:
        """Training-only terms of the encoder (a VQ commitment loss); zero by default."""
        return torch.zeros(())

    def stats(self) -> dict[str, Tensor]:
        """Diagnostics averaged into the training log (e.g. codebook perplexity)."""
        return {}


class Encoder(Part):
    """x -> q(z | x). Declares the latent it produces before it is built."""

    slot = "encoder"
    #: The kind of latent this encoder produces.
    produces: ClassVar[str]

    @classmethod
    def latent_spec(cls, data: DataSpec, config: object) -> LatentSpec:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Posterior:
        raise NotImplementedError

    def embed(self, z: Tensor) -> Tensor:
        """Map a latent drawn from the prior (``[N, *shape]``) to decoder input."""
        return z


class Decoder(Part):
    """z -> parameters of the likelihood, ``[N, out_channels, H, W]``."""

    slot = "decoder"

    def __init__(self, data: DataSpec, latent: LatentSpec, config: object, out_channels: int):
        super().__init__(data, latent, config)


class Prior(Part):
    """Density and sampling over latents."""

    slot = "prior"
    #: 2 for a prior fitted after the autoencoder, on codes of the frozen encoder.
    stage: ClassVar[int] = 1

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) summed over latent dimensions: ``[N, *shape] -> [N]``."""
        raise NotImplementedError

    def sample(self, n: int) -> Tensor:
        raise NotImplementedError

    def kl(self, posterior: Posterior) -> Tensor | None:
        """Closed-form KL(q || p) per latent dimension ``[B, *shape]``, or None if none exists."""
        return None


class Likelihood(Part):
    """p(x | params): a normalised distribution over the data's discrete levels."""

    slot = "likelihood"

    def param_channels(self) -> int:
        """Channels the decoder must produce for this likelihood."""
        raise NotImplementedError

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x | params) summed over pixels: ``[N]``."""
        raise NotImplementedError

    def sample(self, params: Tensor) -> Tensor:
        raise NotImplementedError


def to_levels(x: Tensor, levels: int) -> Tensor:
    """Integer level indices of images given as ``level / (levels - 1)``."""
    return torch.round(x * (levels - 1)).long()
