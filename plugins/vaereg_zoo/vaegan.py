"""VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric",
sec. 2, eq. 9 and Algorithm 1). A convolutional discriminator Dis sees real images x,
reconstructions x~ = Dec(z), z ~ q(z|x), and samples x_p = Dec(z_p), z_p ~ p(z); the reconstruction
is measured on its l-th layer's features (the last convolution's, ``ConvDiscriminator.features``):

    L_prior = KL(q(z|x) || p(z))
    L_llike = -log N(Dis_l(x) | Dis_l(x~), I)                                    (eq. 9)
    L_GAN   = -log Dis(x) - log(1 - Dis(x~)) - log(1 - Dis(x_p))   (the discriminator's cross-entropy)

Three optimisers, as in Algorithm 1 (reading its L_GAN as the discriminator's loss above):

    encoder       <- L_prior + L_llike (+ pixel_weight * -log p(x|z)) + aux
    decoder       <- gamma * L_llike - log Dis(x~) - log Dis(x_p) (+ pixel_weight * -log p(x|z))
    discriminator <- L_GAN

The decoder's GAN term is the non-saturating generator loss -log Dis(.) in place of the paper's
log(1 - Dis(.)). Images are the likelihood's mean under the decoder's parameters; all terms are
means over the batch. The decoder group is the model's decoder and likelihood; the encoder group
is the rest of the trained parameters (the encoder, and a jointly trained prior: L_prior trains it).

Defaults: gamma = 1e-5, the reconstruction-to-GAN weighting of the authors' released CelebA code
(the paper names no value); the discriminator's Adam lr 3e-4, the paper's RMSProp rate.
``pixel_weight`` > 0 adds the likelihood's -log p(x|z) to the encoder's and the decoder's losses,
so the likelihood is trained and the model's NLL (reported like every VAE's) is meaningful; the
paper's model is pixel_weight = 0. Default 1: the harness reports this model's NLL and FID beside
the other variants', and an untrained likelihood would make that NLL meaningless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaereg import Likelihood, Objective, Range, Step, UsageError
from vaereg.model import VAE, Terms
from vaereg.objectives import kl_per_image, vector_mismatch
from vaereg.specs import DataSpec, LatentSpec
from vaereg_zoo.discriminators import ConvDiscriminator

PRESET = ("vaegan", "VAE-GAN (Larsen et al. 2016): a VAE whose reconstruction is measured on a GAN "
          "discriminator's features, with the decoder also trained to fool it", {})

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class VAEGANConfig:
    """``gamma``: the decoder's weight on L_llike against its GAN loss. ``pixel_weight``: weight of
    -log p(x|z) in the encoder's and decoder's losses (0: the paper's model). ``width`` and
    ``hidden_units``: the discriminator's first convolution's channels and its fully connected
    layer. ``discriminator_lr``: its Adam learning rate."""

    gamma: Annotated[float, Range(0, 1e6)] = 1e-5
    pixel_weight: Annotated[float, Range(0, 1e6)] = 1.0
    width: Annotated[int, Range(1, 1024)] = 32
    hidden_units: Annotated[int, Range(1, 16384)] = 512
    discriminator_lr: Annotated[float, Range(0, 1, open_low=True)] = 3e-4


class Pass(NamedTuple):
    """One discriminator pass over a batch's real images, reconstructions and prior samples."""

    real: Tensor  # Dis_l(x) [B, F]
    recon: Tensor  # Dis_l(x~) [B, F]
    logits: tuple[Tensor, Tensor, Tensor]  # Dis's logits on x, x~, x_p, each [B]


def feature_nll(real: Tensor, recon: Tensor) -> Tensor:
    """L_llike per image ``[B]``: -log N(real | recon, I) summed over the features."""
    return (0.5 * (real - recon).square() + HALF_LOG_2PI).sum(1)


class VAEGAN(Objective):
    """The three losses of Algorithm 1 on one forward pass, each with its own optimiser."""

    Config = VAEGANConfig
    latent_kinds = frozenset({"continuous"})

    def __init__(self, data: DataSpec, latent: LatentSpec, config: VAEGANConfig, closed_form_kl: bool):
        super().__init__(data, latent, config, closed_form_kl)
        self.discriminator = ConvDiscriminator(data.channels, data.height, data.width, config.width,
                                               config.hidden_units)
        self._last: tuple[Terms, Pass] | None = None  # the pass of the terms the steps are on

    @classmethod
    def mismatch(cls, latent: LatentSpec, config: VAEGANConfig, closed_form_kl: bool) -> str | None:
        return super().mismatch(latent, config, closed_form_kl) or vector_mismatch(
            latent, "VAE-GAN is built and tested here on the Gaussian VAE's vector latent")

    @classmethod
    def likelihood_mismatch(cls, likelihood: type[Likelihood]) -> str | None:
        if likelihood.mean is Likelihood.mean:  # not overridden: an autoregressive likelihood
            return (f"shows its discriminator the likelihood's mean image, and {likelihood.__name__} has none; "
                    f"pick a likelihood with a mean (dlogistic, gaussian, bernoulli)")
        return None

    def images(self, params: Tensor, model: VAE, terms: Terms) -> Tensor:
        images = model.likelihood.mean(params, terms.batch.context)
        if images is None:
            raise UsageError(f"vaegan shows the discriminator the likelihood's mean image, and likelihood "
                             f"{type(model.likelihood).__name__} has none; use dlogistic, gaussian or bernoulli")
        return images

    def discriminate(self, terms: Terms) -> Pass:
        """Dis on x, x~ (decoded from the first posterior draw) and x_p (decoded from prior draws):
        computed once per ``terms`` and shared by the three steps, as Algorithm 1 shares X, X~, X_p."""
        if self._last is not None and self._last[0] is terms:
            return self._last[1]
        model, context, x = terms.model, terms.batch.context, terms.batch.x
        if model is None:
            raise UsageError("vaegan decodes reconstructions and prior samples with the model's decoder; "
                             "give it the terms VAE.forward returns (terms.model)")
        recon = self.images(model.decoder(terms.posterior.decoder_input(terms.z[:1]), context), model, terms)
        z_p = model.active_prior.sample(x.shape[0], context).detach()
        sample = self.images(model.decoder(model.encoder.embed(z_p, context), context), model, terms)
        dis = self.discriminator
        real, reconstructed = dis.features(x), dis.features(recon)
        logits = (dis.classify(real), dis.classify(reconstructed), dis.classify(dis.features(sample)))
        result = Pass(real, reconstructed, logits)
        self._last = (terms, result)
        return result

    def pixel_term(self, terms: Terms) -> Tensor:
        return self.config.pixel_weight * -terms.log_px[0].mean()

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        """The encoder's loss: L_prior + L_llike (+ the pixel term) + aux."""
        d = self.discriminate(terms)
        kl, llike = kl_per_image(terms).mean(), feature_nll(d.real, d.recon).mean()
        loss = kl + llike + self.pixel_term(terms) + terms.aux
        stats = {"loss": loss.detach(), "kl": kl.detach(), "llike": llike.detach(),
                 "nll_x": -terms.log_px[0].mean().detach()}
        stats.update({k: v.detach() for k, v in terms.stats.items()})
        return loss, stats

    def decoder_loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        """gamma L_llike plus the non-saturating generator loss on x~ and x_p (+ the pixel term)."""
        d = self.discriminate(terms)
        _, recon, sample = d.logits
        llike = feature_nll(d.real, d.recon).mean()
        generator = (F.binary_cross_entropy_with_logits(recon, torch.ones_like(recon))
                     + F.binary_cross_entropy_with_logits(sample, torch.ones_like(sample)))
        loss = self.config.gamma * llike + generator + self.pixel_term(terms)
        return loss, {"loss": loss.detach(), "generator": generator.detach()}

    def discriminator_loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        """L_GAN: the cross-entropy of real images against reconstructions and prior samples. The
        last step: it lets go of the shared pass."""
        real, recon, sample = self.discriminate(terms).logits
        self._last = None
        loss = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(recon, torch.zeros_like(recon))
                + F.binary_cross_entropy_with_logits(sample, torch.zeros_like(sample)))
        return loss, {"loss": loss.detach()}

    def steps(self, model: VAE, trained: list[nn.Parameter]) -> list[Step]:
        own = {id(p) for module in (model.decoder, model.likelihood) for p in module.parameters()}
        return [Step("encoder", [p for p in trained if id(p) not in own], self.loss),
                Step("decoder", [p for p in trained if id(p) in own], self.decoder_loss),
                Step("discriminator", list(self.discriminator.parameters()), self.discriminator_loss,
                     lr=self.config.discriminator_lr)]
