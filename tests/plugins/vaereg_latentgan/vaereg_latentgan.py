"""A third-party adversarial objective in the manner of the adversarial autoencoder (Makhzani et
al. 2016): a discriminator D tells prior draws from posterior draws, with its own Adam optimiser,
and the autoencoder minimises -log p(x|z) - weight * log D(z) (the non-saturating generator loss)."""

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from vaereg import Objective, Range, Step, hookimpl

VAEREG_PLUGIN_API = 3


@dataclass
class LatentGANConfig:
    hidden: Annotated[int, Range(1, 4096)] = 32
    weight: Annotated[float, Range(0, 100)] = 1.0
    discriminator_lr: Annotated[float, Range(0, 1, open_low=True)] = 5e-4


class LatentGAN(Objective):
    """Reconstruction plus an adversarial match of the aggregate posterior to the prior."""

    Config = LatentGANConfig
    latent_kinds = frozenset({"continuous"})

    def __init__(self, data, latent, config, closed_form_kl):
        super().__init__(data, latent, config, closed_form_kl)
        self.discriminator = nn.Sequential(nn.Linear(latent.size, config.hidden), nn.ReLU(),
                                           nn.Linear(config.hidden, 1))

    def logits(self, z):
        return self.discriminator(z.flatten(1)).squeeze(1)

    def loss(self, terms, progress):
        z = terms.z[0]
        fooled = F.binary_cross_entropy_with_logits(self.logits(z), torch.ones(z.shape[0], device=z.device))
        loss = -terms.log_px[0].mean() + self.config.weight * fooled + terms.aux
        return loss, {"loss": loss.detach(), "fooled": fooled.detach()}

    def discriminator_loss(self, terms, progress):
        z = terms.z[0].detach()
        prior = torch.randn_like(z)
        real, fake = self.logits(prior), self.logits(z)
        loss = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        return loss, {"loss": loss.detach()}

    def steps(self, model, trained):
        return [Step("model", trained, self.loss),
                Step("discriminator", list(self.discriminator.parameters()), self.discriminator_loss,
                     lr=self.config.discriminator_lr, betas=(0.5, 0.9))]


@hookimpl
def register_objectives(register):
    register("latentgan", LatentGAN)
