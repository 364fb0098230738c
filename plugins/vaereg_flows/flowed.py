"""The posterior every flow encoder returns: a diagonal Gaussian base N(mu, sigma) pushed
through a flow, with log q(z_K | x) = log N(z_0; mu, sigma) - log |det dz_K / dz_0|."""

from __future__ import annotations

import torch
from torch import Tensor

from vaereg import Posterior


class FlowedGaussian(Posterior):
    """q(z | x) through a flow (``through``). A draw remembers its log q, so the model scores
    it at no cost; another z is scored by ``score`` (a flow that can be inverted overrides it)."""

    def __init__(self, mean: Tensor, log_std: Tensor):
        self.mean, self.log_std = mean, log_std
        self._drawn: tuple[Tensor, Tensor] | None = None

    def through(self, z0: Tensor) -> tuple[Tensor, Tensor]:
        """z_K ``[k, B, D]`` and log q(z_K | x) ``[k, B]`` of base points ``z0`` ``[k, B, D]``."""
        raise NotImplementedError

    def score(self, z: Tensor) -> Tensor:
        """log q(z | x) ``[k, B]`` of a z this posterior did not draw."""
        raise NotImplementedError(f"{type(self).__name__} scores only its own latest draws (rsample's output): "
                                  "its flow is not inverted")

    def rsample(self, k: int) -> Tensor:
        z0 = self.mean + torch.randn((k, *self.mean.shape), device=self.mean.device) * self.log_std.exp()
        z, log_q = self.through(z0)
        self._drawn = (z, log_q)
        return z

    def log_prob(self, z: Tensor) -> Tensor:
        if self._drawn is not None and z is self._drawn[0]:
            return self._drawn[1]
        return self.score(z)

    def mode(self) -> Tensor:
        """The flow's image of the base mean (a centre of q, not its exact mode)."""
        return self.through(self.mean[None])[0][0]
