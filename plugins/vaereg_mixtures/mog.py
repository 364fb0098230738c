"""A mixture of diagonal Gaussians over a latent vector, learned jointly with the autoencoder;
under ``--condition label`` its mixture weights depend on the class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor, nn

from vaereg import Context, DataSpec, LatentSpec, Prior, Range
from vaereg.parts import ForVector
from vaereg_mixtures.diagonal import draw, mixture_log_prob


@dataclass
class MixtureConfig:
    components: Annotated[int, Range(1, 10000)] = 10


class LearnedMixture(ForVector, Prior):
    """p(z | y) = sum_k pi_k(y) N(z; mu_k, diag sigma_k^2), every parameter learned by gradient
    with the autoencoder (Monte-Carlo KL)."""

    Config = MixtureConfig

    def __init__(self, data: DataSpec, latent: LatentSpec, config: MixtureConfig):
        super().__init__(data, latent, config)
        k, d = config.components, latent.size
        self.means = nn.Parameter(torch.randn(k, d))
        self.log_stds = nn.Parameter(torch.zeros(k, d))
        self.logits = nn.Parameter(torch.zeros(k))
        self.class_logits = nn.Embedding(data.classes, k) if data.classes else None
        if self.class_logits is not None:
            nn.init.zeros_(self.class_logits.weight)

    def log_weights(self, n: int, context: Context) -> Tensor:
        """log pi_k per row ``[n, K]``."""
        logits = self.logits.expand(n, -1)
        if self.class_logits is not None:
            logits = logits + self.class_logits(context.label)
        return logits.log_softmax(1)

    def log_prob(self, z: Tensor, context: Context) -> Tensor:
        return mixture_log_prob(z, self.means, self.log_stds, self.log_weights(z.shape[0], context))

    def sample(self, n: int, context: Context) -> Tensor:
        pick = torch.multinomial(self.log_weights(n, context).exp(), 1).squeeze(1)
        return draw(self.means, self.log_stds, pick)
