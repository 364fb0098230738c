"""Ex-post density estimation (Ghosh et al. 2020, "From Variational to Deterministic
Autoencoders"): after the autoencoder has trained against N(0, I), a Gaussian mixture is
fitted by EM to samples of the frozen encoder's aggregate posterior, and becomes the prior the
NLL is scored with and samples are drawn from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import Tensor

from vaereg import Context, DataSpec, LatentSpec, Prior, PriorLatents, Range
from vaereg.parts import ForVector
from vaereg_mixtures.em import Mixture, fit_mixture


@dataclass
class GMMConfig:
    """``floor``: added to every variance (a covariance floor); ``restarts``: EM runs from
    different k-means++ starts, the best kept."""

    components: Annotated[int, Range(1, 1000)] = 10
    covariance: Literal["full", "diag"] = "full"
    restarts: Annotated[int, Range(1, 100)] = 3
    iterations: Annotated[int, Range(1, 10000)] = 200
    floor: Annotated[float, Range(0, 1, open_low=True)] = 1e-6  # 0 would leave a collapsed component singular


class FittedMixture(ForVector, Prior):
    """A Gaussian mixture fitted by EM after the autoencoder (N(0, I) stands in before),
    to 4 posterior samples per training image."""

    Config = GMMConfig
    schedule = "fit"
    prior_latents = PriorLatents(source="sample", draws=4)

    def __init__(self, data: DataSpec, latent: LatentSpec, config: GMMConfig):
        super().__init__(data, latent, config)
        self.config = config
        k, d = config.components, latent.size
        self.register_buffer("weights", torch.full((k,), 1.0 / k))
        self.register_buffer("means", torch.zeros(k, d))
        self.register_buffer("covariances", torch.eye(d).repeat(k, 1, 1))

    @property
    def mixture(self) -> Mixture:
        return Mixture(self.weights, self.means, self.covariances)

    def fit(self, latents: Tensor, context: Context) -> list[dict[str, float]]:
        c = self.config
        fitted, history = fit_mixture(latents.flatten(1).cpu(), c.components, c.covariance, floor=c.floor,
                                      iterations=c.iterations, restarts=c.restarts)
        for name in ("weights", "means", "covariances"):
            getattr(self, name).copy_(getattr(fitted, name))
        return [{"log_likelihood": value} for value in history]

    def log_prob(self, z: Tensor, context: Context) -> Tensor:
        return torch.logsumexp(self.mixture.component_log_probs(z.flatten(1)), 1)

    def sample(self, n: int, context: Context) -> Tensor:
        pick = torch.multinomial(self.weights, n, replacement=True)
        chol = torch.linalg.cholesky(self.covariances[pick])
        eps = torch.randn(n, self.means.shape[1], 1, device=self.means.device)
        return self.means[pick] + (chol @ eps).squeeze(-1)
