"""The four part contracts and the posterior an encoder returns.

Every part is a ``torch.nn.Module`` built from ``(data, latent, config)``, where ``config`` is an
instance of the part's own ``Config`` dataclass: the constructor arguments are the serialisable
config, so a checkpoint rebuilds any model from JSON and a state dict.

Images reach parts as floats ``intensity / (intensities - 1)`` in ``[0, 1]``, shape
``[N, C, H, W]``. A latent sample ``z`` has shape ``[k, B, *latent.shape]`` for ``k`` draws per
image; parts that score or decode latents see them flattened to ``[k * B, *latent.shape]``,
with the ``Context`` repeated to match (``Context.repeat``). Every part receives the context;
one that does not condition on it ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from vaereg.context import Context
from vaereg.specs import LATENT_KINDS, DataSpec, LatentSpec

SLOTS: tuple[str, ...] = ("encoder", "decoder", "prior", "likelihood")


@dataclass
class NoOptions:
    """Config of a part that takes no options."""


class Part(nn.Module):
    """Base of every part: its slot, its options and the latent kinds it works with."""

    slot: ClassVar[str]
    Config: ClassVar[type] = NoOptions
    #: Latent kinds this part can serve (compatibility; ``mismatch`` may refine it).
    latent_kinds: ClassVar[frozenset[str]] = LATENT_KINDS
    #: Objective settings this part trains best with (NVAE: KL warm-up and balancing); the
    #: user's ``objective.*`` options override them.
    objective: ClassVar[dict[str, Any]] = {}

    def __init__(self, data: DataSpec, latent: LatentSpec, config: object):
        super().__init__()

    @classmethod
    def mismatch(cls, data: DataSpec, latent: LatentSpec, config: object) -> str | None:
        """Why this part cannot serve ``data`` and ``latent``, or None when it can."""
        if latent.kind not in cls.latent_kinds:
            kinds = "/".join(sorted(cls.latent_kinds))
            return f"needs a {kinds} latent, got a {latent.describe()}"
        return None

    @classmethod
    def claims(cls, latent: LatentSpec) -> bool:
        """Routing, not compatibility: when a bare name in a combo fits several slots, it goes
        to the one whose part claims the latent (a PixelCNN is the prior over codes and the
        likelihood otherwise). Default: every latent the part fits."""
        return True


class ForCodes:
    """Mixin for a part over discrete codes: one code map, or a hierarchy of them (VQ-VAE-2)."""

    latent_kinds = frozenset({"discrete", "hierarchical"})

    @classmethod
    def mismatch(cls, data: DataSpec, latent: LatentSpec, config: object) -> str | None:
        if not latent.is_codes:
            return f"needs discrete codes (a code map or a hierarchy of them), got a {latent.describe()}"
        return None


class ForVector:
    """Mixin for a part over one flat continuous latent vector (a mixture, a flow)."""

    latent_kinds = frozenset({"continuous"})

    @classmethod
    def mismatch(cls, data: DataSpec, latent: LatentSpec, config: object) -> str | None:
        if latent.kind != "continuous" or len(latent.shape) != 1:
            return f"needs a continuous latent vector, got a {latent.describe()}"
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

    def cross_log_prob(self, z: Tensor) -> Tensor:
        """log q(z_i | x_j) per latent dimension, for every latent ``z_i`` ``[N, *shape]`` under
        every image's posterior: ``[N, B, *shape]`` (a factorised posterior; objectives that
        estimate the aggregate posterior, such as total correlation, need it)."""
        raise NotImplementedError(f"{type(self).__name__} does not give log q(z | x) per dimension for any z")

    def mode(self) -> Tensor:
        """The most likely latent per image ``[B, *shape]`` (the mean of a Gaussian), for
        priors fitted to posterior means."""
        raise NotImplementedError(f"{type(self).__name__} has no mode; fit the prior to samples")

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

    def correction(self, log_px: Tensor) -> Tensor:
        """A training-only term whose value is zero and whose gradient corrects a draw that is
        not fully reparameterised (a rejection sampler's score-function term, Naesseth et al.
        2017, eq. 6), given log p(x | z) ``[k, B]`` of the draws; zero by default."""
        return torch.zeros(())

    def stats(self) -> dict[str, Tensor]:
        """Diagnostics averaged into the training log (e.g. codebook perplexity)."""
        return {}


class PointMass(Posterior):
    """q(z | x) = delta(z - f(x)): a deterministic encoder's latent ``[B, *shape]``. Over a
    continuous latent it has no density, so such a model reports no NLL (``Combo.no_density``);
    it trains with objectives that need only the draw (an autoencoder, WAE, AAE)."""

    deterministic = True

    def __init__(self, z: Tensor):
        self.z = z

    def rsample(self, k: int) -> Tensor:
        return self.z.expand(k, *self.z.shape)

    def log_prob(self, z: Tensor) -> Tensor:
        return torch.zeros(z.shape[:2], device=z.device)

    def mode(self) -> Tensor:
        return self.z


class Encoder(Part):
    """(x, context) -> q(z | x, context). Declares its latent and posterior type before it is
    built, so the combo knows the latent shape and whether a closed-form KL exists.

    A coupled encoder also fills other slots (``fills``: slot -> the attribute of the built
    encoder that serves there). An NVAE or ladder top-down path is shared by q and p, so it
    lives in one module with the prior and decoder; such an encoder is built with the
    ``out_channels`` its likelihood needs, and the likelihood stays swappable. One that fills
    the prior names that prior's type in ``prior_type``."""

    slot = "encoder"
    #: The Posterior type ``forward`` returns; the KL table is keyed by it.
    posterior: ClassVar[type[Posterior]] = Posterior
    fills: ClassVar[dict[str, str]] = {}
    prior_type: ClassVar[type[Prior] | None] = None

    @classmethod
    def latent_spec(cls, data: DataSpec, config: object) -> LatentSpec:
        raise NotImplementedError

    def forward(self, x: Tensor, context: Context) -> Posterior:
        raise NotImplementedError

    def embed(self, z: Tensor, context: Context) -> Tensor:
        """Map a latent drawn from the prior (``[N, *shape]``) to decoder input."""
        return z


class Decoder(Part):
    """(z, context) -> parameters of the likelihood, ``[N, out_channels, H, W]``."""

    slot = "decoder"

    def __init__(self, data: DataSpec, latent: LatentSpec, config: object, out_channels: int):
        super().__init__(data, latent, config)

    def forward(self, z: Tensor, context: Context) -> Tensor:
        raise NotImplementedError


#: How a prior is fitted: with the autoencoder, or after it on the frozen encoder's latents,
#: by gradient (a PixelCNN over codes) or by its own non-gradient ``fit`` (EM).
Schedule = Literal["joint", "gradient", "fit"]


@dataclass(frozen=True)
class PriorLatents:
    """Which latents a prior fitted after the autoencoder sees: the posterior's ``mode`` or
    ``draws`` samples per training image."""

    source: Literal["mode", "sample"] = "sample"
    draws: int = 1


class Prior(Part):
    """Density and sampling over latents, optionally conditioned on the context.

    A prior fitted after the autoencoder (``schedule`` not ``joint``) is replaced while the
    autoencoder trains by its ``stand_in``: N(0, I) over continuous latents and the uniform
    prior over codes unless it names another ``Prior`` class. ``schedule`` may depend on the
    config (``schedule_for``: a flow fitted jointly or post hoc)."""

    slot = "prior"
    schedule: ClassVar[Schedule] = "joint"
    prior_latents: ClassVar[PriorLatents] = PriorLatents()
    stand_in: ClassVar[type[Prior] | None] = None

    @classmethod
    def schedule_for(cls, config: object) -> Schedule:
        """How this prior is fitted with ``config``; ``schedule`` unless overridden."""
        return cls.schedule

    @classmethod
    def encoder_mismatch(cls, encoder: type[Encoder]) -> str | None:
        """Why this prior cannot pair with ``encoder`` (a VampPrior needs a diagonal-Gaussian
        posterior), or None when it can. Checked when the combo is resolved."""
        return None

    def attach(self, encoder: Encoder) -> None:
        """Called once when the model is built, with the encoder this prior is paired with
        (a VampPrior encodes its pseudo-inputs with it). Reach it later as ``self.encoder``;
        it is kept out of this module's parameters and state."""
        self._paired = (encoder,)

    @property
    def encoder(self) -> Encoder:
        return self._paired[0]

    def prepare(self) -> None:
        """Called once per model pass before any ``log_prob`` or ``sample``: compute what the
        pass shares (a VampPrior's encoded pseudo-inputs)."""

    def log_prob(self, z: Tensor, context: Context) -> Tensor:
        """log p(z | context) summed over latent dimensions: ``[N, *shape] -> [N]``."""
        raise NotImplementedError

    def sample(self, n: int, context: Context) -> Tensor:
        """``n`` latents ``[n, *shape]``, the i-th under the i-th row of ``context``."""
        raise NotImplementedError

    def fit(self, latents: Tensor, context: Context) -> list[dict[str, float]]:
        """A non-gradient fit (``schedule = "fit"``) to ``latents`` ``[N, *shape]``; returns one
        record per iteration (e.g. ``{"log_likelihood": ...}``) for the training log.

        Under torchrun ``latents`` is this rank's share: sum sufficient statistics over the
        ranks with ``vaereg.collective.all_sum``. Afterwards rank 0's fitted state is broadcast,
        so a fit that does not reduce still leaves every rank with the same prior (rank 0's)."""
        raise NotImplementedError(f"{type(self).__name__} declares schedule={self.schedule!r} but has no fit()")


class Likelihood(Part):
    """p(x | params, context): a normalised distribution over the data's discrete intensities
    (or a reconstruction score in its place: ``not_a_density``)."""

    slot = "likelihood"

    @classmethod
    def not_a_density(cls, data: DataSpec, config: object) -> str | None:
        """Why ``log_prob`` is a reconstruction score rather than a normalised density over the
        data's intensities (MS-SSIM), or None when it is one. A model without a density reports
        no NLL, and this reason in its place."""
        return None

    def param_channels(self) -> int:
        """Channels the decoder must produce for this likelihood."""
        raise NotImplementedError

    def log_prob(self, x: Tensor, params: Tensor, context: Context) -> Tensor:
        """log p(x | params) summed over pixels: ``[N]``."""
        raise NotImplementedError

    def sample(self, params: Tensor, context: Context) -> Tensor:
        raise NotImplementedError

    def mean(self, params: Tensor, context: Context) -> Tensor | None:
        """The mean image in [0, 1] under ``params``, where one is cheap (grids show it beside the
        sampled pixels); None for an autoregressive likelihood."""
        return None


def intensity_index(x: Tensor, intensities: int) -> Tensor:
    """Integer intensities of images given as ``intensity / (intensities - 1)``."""
    return torch.round(x * (intensities - 1)).long()
