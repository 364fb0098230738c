"""A third-party objective: the ELBO with the KL scaled by ``gamma`` and the reconstruction
term by ``alpha``, loss = -alpha log p(x|z) + gamma KL(q(z|x) || p(z)) + aux; and a preset that
trains the Gaussian VAE with it at gamma = 4."""

from dataclasses import dataclass
from typing import Annotated

from vaereg import Objective, Range, hookimpl
from vaereg.objectives import kl_per_image

VAEREG_PLUGIN_API = 3


@dataclass
class ScaledKLConfig:
    gamma: Annotated[float, Range(0, 100)] = 2.0
    alpha: Annotated[float, Range(0, 100, open_low=True)] = 1.0


class ScaledKL(Objective):
    """-alpha log p(x|z) + gamma KL, averaged over the batch."""

    Config = ScaledKLConfig

    def loss(self, terms, progress):
        kl = kl_per_image(terms)
        loss = (-self.config.alpha * terms.log_px[0] + self.config.gamma * kl).mean() + terms.aux
        return loss, {"loss": loss.detach(), "kl": kl.mean().detach()}


@hookimpl
def register_objectives(register):
    register("scaledkl", ScaledKL)


@hookimpl
def register_presets(register):
    register("scaledvae", "Gaussian VAE trained with the KL scaled by 4", options={"objective": {"gamma": 4.0}},
             encoder="gaussian-mlp", decoder="mlp", prior="normal", likelihood="dlogistic", objective="scaledkl")
