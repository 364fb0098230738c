"""FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising", eq. 2 and Algorithm 2):

    VAE loss = -log p(x|z) + KL(q(z|x) || p(z)) + gamma TC(q(z)) + aux,
    TC(q(z)) ~= E_q(z)[log(D(z) / (1 - D(z)))]

The discriminator D tells draws z ~ q(z) (the posterior draw of each image: the joint) from the
same draws with every dimension permuted independently across the batch (``permute_dims``: draws
from the product of the marginals). Its logit is log(D / (1 - D)), so the TC estimate is the batch
mean of the logit on the posterior draws. D minimises the cross-entropy
-1/2 [E log D(z) + E log(1 - D(permuted z))] on detached draws, with its own Adam optimiser. The
paper permutes a second batch's draws; permuting the same batch's gives draws from the same
product of marginals at half the encoder passes.

Defaults are the paper's for dSprites: D is an MLP of 6 hidden layers of 1000 units with
LeakyReLU(0.2), trained by Adam with lr 1e-4 and betas (0.5, 0.9); gamma = 35, the weight of the
paper's best-scoring dSprites model (its traversal figure; 6.4 is a public re-implementation's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaereg import Objective, Range, Step
from vaereg.model import VAE, Terms
from vaereg.objectives import kl_per_image, vector_mismatch
from vaereg.specs import DataSpec, LatentSpec
from vaereg_zoo.discriminators import MLPDiscriminator

PRESET = ("factorvae", "FactorVAE (Kim & Mnih 2018): the ELBO plus gamma * total correlation, estimated by a "
          "discriminator between posterior draws and their dimension-wise permutation", {})

BETAS = (0.5, 0.9)  # the discriminator's Adam betas (paper, appendix)


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``z`` ``[B, D]`` with each column permuted independently across the batch: every
    dimension keeps its values (its marginal), the dependence between dimensions is broken."""
    order = torch.rand(z.shape, generator=generator, device=z.device).argsort(0)
    return z.gather(0, order)


@dataclass
class FactorVAEConfig:
    """``gamma``: the TC's weight. ``hidden_layers`` x ``hidden_units``: the discriminator's MLP.
    ``discriminator_lr``: its Adam learning rate (betas 0.5, 0.9)."""

    gamma: Annotated[float, Range(0, 1e6)] = 35.0
    hidden_layers: Annotated[int, Range(1, 32)] = 6
    hidden_units: Annotated[int, Range(1, 16384)] = 1000
    discriminator_lr: Annotated[float, Range(0, 1, open_low=True)] = 1e-4


class FactorVAE(Objective):
    """The ELBO plus gamma times the discriminator's TC estimate; the discriminator's own step."""

    Config = FactorVAEConfig
    latent_kinds = frozenset({"continuous"})

    def __init__(self, data: DataSpec, latent: LatentSpec, config: FactorVAEConfig, closed_form_kl: bool):
        super().__init__(data, latent, config, closed_form_kl)
        self.discriminator = MLPDiscriminator(latent.size, config.hidden_layers, config.hidden_units,
                                              lambda: nn.LeakyReLU(0.2))

    @classmethod
    def mismatch(cls, latent: LatentSpec, config: FactorVAEConfig, closed_form_kl: bool) -> str | None:
        return super().mismatch(latent, config, closed_form_kl) or vector_mismatch(
            latent, "FactorVAE permutes its dimensions")

    def total_correlation(self, z: Tensor) -> Tensor:
        """The TC estimate: the batch mean of log(D(z) / (1 - D(z))), D's logit."""
        return self.discriminator(z).mean()

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        kl = kl_per_image(terms)
        nelbo = (kl - terms.log_px[0]).mean()
        tc = self.total_correlation(terms.z[0])
        loss = nelbo + self.config.gamma * tc + terms.aux
        stats = {"loss": loss.detach(), "nelbo": nelbo.detach(), "kl": kl.mean().detach(), "tc": tc.detach()}
        stats.update({k: v.detach() for k, v in terms.stats.items()})
        return loss, stats

    def discriminator_loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        z = terms.z[0].detach()
        joint, marginals = self.discriminator(z), self.discriminator(permute_dims(z))
        loss = 0.5 * (F.binary_cross_entropy_with_logits(joint, torch.ones_like(joint))
                      + F.binary_cross_entropy_with_logits(marginals, torch.zeros_like(marginals)))
        accuracy = 0.5 * ((joint > 0).float().mean() + (marginals < 0).float().mean())
        return loss, {"loss": loss.detach(), "accuracy": accuracy.detach()}

    def steps(self, model: VAE, trained: list[nn.Parameter]) -> list[Step]:
        return [Step("model", trained, self.loss),
                Step("discriminator", list(self.discriminator.parameters()), self.discriminator_loss,
                     lr=self.config.discriminator_lr, betas=BETAS)]
