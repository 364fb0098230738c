"""The uniform prior over codes: N positions of K codes cost exactly N log K nats."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaereg import DataSpec, LatentSpec, NoOptions, Prior
from vaereg.parts import FitsCodes


class UniformCodes(FitsCodes, Prior):
    """p(z) = prod over levels of K^-N, for a code map (or each map of a hierarchy) of N
    positions with K codes each."""

    def __init__(self, data: DataSpec, latent: LatentSpec, config: NoOptions):
        super().__init__(data, latent, config)
        self.latent = latent
        self.log_p = -sum(level.size * math.log(level.codes) for level in latent.as_levels())
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    def log_prob(self, z: Tensor) -> Tensor:
        return torch.full((z.shape[0],), self.log_p, device=z.device)

    def sample(self, n: int) -> Tensor:
        return self.latent.join([torch.randint(level.codes, (n, *level.shape), device=self.anchor.device)
                                 for level in self.latent.as_levels()])
