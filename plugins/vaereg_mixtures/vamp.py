"""VampPrior (Tomczak and Welling 2018, "VAE with a VampPrior"): the mixture of the paired
encoder's posteriors at K learned pseudo-inputs, p(z) = 1/K sum_k q(z | u_k)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor, nn

from vaereg import Context, DataSpec, DiagonalGaussian, Encoder, LatentSpec, Prior, Range
from vaereg.parts import ForVector
from vaereg_mixtures.diagonal import draw, mixture_log_prob


@dataclass
class VampConfig:
    pseudo_inputs: Annotated[int, Range(1, 10000)] = 100


class VampPrior(ForVector, Prior):
    """The encoder's diagonal Gaussians at ``pseudo_inputs`` learned images in [0, 1] (a sigmoid
    of free parameters), mixed equally; trained jointly, Monte-Carlo KL. The pseudo-inputs are
    encoded once per model pass (``prepare``), not once per ``log_prob``."""

    Config = VampConfig

    def __init__(self, data: DataSpec, latent: LatentSpec, config: VampConfig):
        super().__init__(data, latent, config)
        self.pseudo_logits = nn.Parameter(torch.randn(config.pseudo_inputs, data.channels, data.height,
                                                      data.width) * 0.5 - 1.0)

    @classmethod
    def mismatch(cls, data: DataSpec, latent: LatentSpec, config: VampConfig) -> str | None:
        if data.classes:
            return ("encodes unlabelled pseudo-inputs, which a class-conditional encoder cannot take; drop "
                    "--condition label, or use a prior that conditions on the class (mog, flow)")
        return super().mismatch(data, latent, config)

    @classmethod
    def encoder_mismatch(cls, encoder: type[Encoder]) -> str | None:
        if encoder.posterior is not DiagonalGaussian:
            return (f"mixes the encoder's diagonal Gaussians, but its posterior is {encoder.posterior.__name__}; "
                    f"pair it with an encoder whose posterior is a DiagonalGaussian (gaussian, gaussian-mlp)")
        return None

    @property
    def pseudo_inputs(self) -> Tensor:
        return torch.sigmoid(self.pseudo_logits)

    def prepare(self) -> None:
        self.components = self.encoder(self.pseudo_inputs, Context())

    def log_prob(self, z: Tensor, context: Context) -> Tensor:
        return mixture_log_prob(z, self.components.mean, self.components.log_std)

    def sample(self, n: int, context: Context) -> Tensor:
        q = self.components
        pick = torch.randint(q.mean.shape[0], (n,), device=q.mean.device)
        return draw(q.mean, q.log_std, pick)
