"""The uniform prior over a code map: N positions of K codes cost exactly N log K nats."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaereg import DataSpec, LatentSpec, NoOptions, Prior


class UniformCodes(Prior):
    """p(z) = K^-N over a map of N positions with K codes each."""

    fits = frozenset({"discrete"})

    def __init__(self, data: DataSpec, latent: LatentSpec, config: NoOptions):
        super().__init__(data, latent, config)
        self.codes, self.shape = latent.codes, latent.shape
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    def log_prob(self, z: Tensor) -> Tensor:
        return torch.full((z.shape[0],), -math.prod(self.shape) * math.log(self.codes), device=z.device)

    def sample(self, n: int) -> Tensor:
        return torch.randint(self.codes, (n, *self.shape), device=self.anchor.device)
