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
from typing import Any, ClassVar

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
    #: Objective settings this part trains best with (NVAE: KL warm-up and balancing); the
    #: user's ``objective.*`` options override them.
    objective: ClassVar[dict[str, Any]] = {}

    def __init__(self, data: DataSpec, latent: LatentSpec, config: object):
        super().__init__()

    @classmethod
    def misfit(cls, data: DataSpec, latent: LatentSpec, config: object) -> str | None:
        """Why this part cannot serve ``data`` and ``latent``, or None when it can."""
        if latent.kind not in cls.fits:
            kinds = "/".join(sorted(cls.fits))
            return f"needs a {kinds} latent, got a {latent.describe()}"
        return None


class FitsCodes:
    """Mixin for a part over discrete codes: one code map, or a hierarchy of them (VQ-VAE-2)."""

    fits = frozenset({"discrete", "hierarchical"})

    @classmethod
    def misfit(cls, data: DataSpec, latent: LatentSpec, config: object) -> str | None:
        if not latent.is_codes:
            return f"needs discrete codes (a code map or a hierarchy of them), got a {latent.describe()}"
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

    def log_prior(self, z: Tensor) -> Tensor | None:
        """log p(z) ``[k, B]`` when drawing ``z`` already computed it (a hierarchy whose
        posterior walks the prior's top-down path), else None and the prior is asked."""
        return None

    def aux_loss(self) -> Tensor:
        """Training-only terms of the encoder (a VQ commitment loss); zero by default."""
        return torch.zeros(())

    def stats(self) -> dict[str, Tensor]:
        """Diagnostics averaged into the training log (e.g. codebook perplexity)."""
        return {}


class Encoder(Part):
    """x -> q(z | x). Declares the latent it produces before it is built.

    A coupled encoder also fills other slots (``fills``: slot -> the attribute of the built
    encoder that serves there). An NVAE or ladder top-down path is shared by q and p, so it
    lives in one module with the prior and decoder; such an encoder is built with the
    ``out_channels`` its likelihood needs, and the likelihood stays swappable."""

    slot = "encoder"
    #: The kind of latent this encoder produces.
    produces: ClassVar[str]
    fills: ClassVar[dict[str, str]] = {}

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
