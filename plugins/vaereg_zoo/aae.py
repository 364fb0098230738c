"""Adversarial autoencoder (Makhzani et al. 2016, "Adversarial Autoencoders", sec. 2): a
deterministic encoder z = f(x), and a discriminator D on latents that tells draws of the prior p(z)
from codes of the data (the aggregate posterior q(z)):

    autoencoder loss   = -log p(x|z) + lambda * (-log D(z)) + aux
    discriminator loss = -log D(z_p) - log(1 - D(z)),   z_p ~ p(z), z detached

The encoder plays the generator with the non-saturating loss -log D(z). The paper alternates a
reconstruction phase and a regularisation phase on each batch; here both gradients come from one
forward pass, as every multi-optimiser objective's (``vaereg.objectives.Step``). The prior draws
come from the active prior of the model that computed the terms (N(0, I) for hand-built terms).

Defaults: the paper's MNIST discriminator, 2 hidden layers of 1000 ReLU units, and lambda = 1 (the
two phases weigh alike). The paper trains with SGD and momentum; the discriminator's step here is
Adam with lr 2e-4 and betas (0.5, 0.999), the usual GAN setting (Radford et al. 2016).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaereg import Objective, Range, Step
from vaereg.model import VAE, Terms
from vaereg.objectives import vector_mismatch
from vaereg.specs import DataSpec, LatentSpec
from vaereg_zoo.discriminators import MLPDiscriminator

PRESET = ("aae", "Adversarial autoencoder (Makhzani et al. 2016): a deterministic encoder whose codes a "
          "discriminator matches to the prior", {})
PARTS = {"encoder": "deterministic"}

BETAS = (0.5, 0.999)  # the discriminator's Adam betas


@dataclass
class AAEConfig:
    """``lambda_``: the generator loss's weight beside the reconstruction. ``hidden_layers`` x
    ``hidden_units``: the discriminator's MLP. ``discriminator_lr``: its Adam learning rate."""

    lambda_: Annotated[float, Range(0, 1e6)] = 1.0
    hidden_layers: Annotated[int, Range(1, 32)] = 2
    hidden_units: Annotated[int, Range(1, 16384)] = 1000
    discriminator_lr: Annotated[float, Range(0, 1, open_low=True)] = 2e-4


class AAE(Objective):
    """Reconstruction plus lambda times the encoder's generator loss; the discriminator's own step."""

    Config = AAEConfig
    latent_kinds = frozenset({"continuous"})

    def __init__(self, data: DataSpec, latent: LatentSpec, config: AAEConfig, closed_form_kl: bool):
        super().__init__(data, latent, config, closed_form_kl)
        self.discriminator = MLPDiscriminator(latent.size, config.hidden_layers, config.hidden_units, nn.ReLU)

    @classmethod
    def mismatch(cls, latent: LatentSpec, config: AAEConfig, closed_form_kl: bool) -> str | None:
        return super().mismatch(latent, config, closed_form_kl) or vector_mismatch(
            latent, "the discriminator reads latent vectors")

    def prior_draws(self, terms: Terms) -> Tensor:
        """As many prior draws as the batch has images, under the batch's context."""
        z = terms.z[0]
        if terms.model is None:
            return torch.randn_like(z)
        return terms.model.active_prior.sample(z.shape[0], terms.batch.context).detach().to(z.dtype)

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.discriminator(terms.z[0])
        fooled = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        reconstruction = -terms.log_px[0].mean()
        loss = reconstruction + self.config.lambda_ * fooled + terms.aux
        stats = {"loss": loss.detach(), "nll_x": reconstruction.detach(), "generator": fooled.detach()}
        stats.update({k: v.detach() for k, v in terms.stats.items()})
        return loss, stats

    def discriminator_loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        prior, codes = self.discriminator(self.prior_draws(terms)), self.discriminator(terms.z[0].detach())
        loss = (F.binary_cross_entropy_with_logits(prior, torch.ones_like(prior))
                + F.binary_cross_entropy_with_logits(codes, torch.zeros_like(codes)))
        accuracy = 0.5 * ((prior > 0).float().mean() + (codes < 0).float().mean())
        return loss, {"loss": loss.detach(), "accuracy": accuracy.detach()}

    def steps(self, model: VAE, trained: list[nn.Parameter]) -> list[Step]:
        return [Step("model", trained, self.loss),
                Step("discriminator", list(self.discriminator.parameters()), self.discriminator_loss,
                     lr=self.config.discriminator_lr, betas=BETAS)]
