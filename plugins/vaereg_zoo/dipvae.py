"""DIP-VAE (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from Unlabeled
Observations", eqs. 6-8): the negative ELBO plus a penalty pulling a covariance of the latent towards
the identity:

    loss = -log p(x|z) + KL(q(z|x) || p(z)) + lambda_od sum_{i!=j} Cov_ij^2 + lambda_d sum_i (Cov_ii - 1)^2 + aux

DIP-VAE-I (eq. 6) takes Cov = Cov_x[mu(x)], the covariance of the posterior means over the batch;
DIP-VAE-II (eqs. 7-8) the covariance of the aggregate posterior, Cov_x[mu(x)] + E_x[diag sigma^2(x)].
Expectations over x are batch means (the covariance divides by B, so a batch of one is defined).

Defaults: the paper ties lambda_d to lambda_od, lambda_d = 10 lambda_od for DIP-VAE-I and
lambda_d = lambda_od for DIP-VAE-II; ``lambda_d`` None applies that tie. lambda_od = 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import Tensor

from vaereg import DiagonalGaussian, Objective, Posterior, Range, UsageError
from vaereg.model import Terms
from vaereg.objectives import kl_per_image
from vaereg.specs import LatentSpec

#: lambda_d / lambda_od in the paper, per type.
PAPER_DIAGONAL_RATIO = {"i": 10.0, "ii": 1.0}


@dataclass
class DIPVAEConfig:
    """``type``: "i" penalises the covariance of the posterior means, "ii" that plus the mean
    posterior variance. ``lambda_od``: weight of the off-diagonal entries. ``lambda_d``: weight of
    the diagonal's distance to 1; None: the paper's tie (10 lambda_od for "i", lambda_od for "ii")."""

    type: Literal["i", "ii"] = "ii"
    lambda_od: Annotated[float, Range(0, 1e6)] = 10.0
    lambda_d: Annotated[float, Range(0, 1e6)] | None = None

    @property
    def diagonal_weight(self) -> float:
        if self.lambda_d is not None:
            return self.lambda_d
        return PAPER_DIAGONAL_RATIO[self.type] * self.lambda_od


def batch_covariance(values: Tensor) -> Tensor:
    """Cov over the batch ``[D, D]`` of ``values`` ``[B, D]``, normalised by B: E[v v^T] - E[v] E[v]^T."""
    centred = values - values.mean(0)
    return centred.T @ centred / values.shape[0]


def dip_covariance(posterior: DiagonalGaussian, kind: Literal["i", "ii"]) -> Tensor:
    """Cov_x[mu(x)] (eq. 6), plus E_x[diag sigma^2(x)] for DIP-VAE-II (eq. 7)."""
    cov = batch_covariance(posterior.mean)
    if kind == "ii":
        cov = cov + torch.diag((2 * posterior.log_std).exp().mean(0))
    return cov


def dip_penalty(cov: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    """lambda_od sum_{i!=j} Cov_ij^2 + lambda_d sum_i (Cov_ii - 1)^2."""
    diagonal = cov.diagonal()
    off_diagonal = cov.square().sum() - diagonal.square().sum()
    return lambda_od * off_diagonal + lambda_d * (diagonal - 1).square().sum()


class DIPVAE(Objective):
    """The negative ELBO plus the DIP-VAE-I or -II covariance penalty."""

    Config = DIPVAEConfig
    latent_kinds = frozenset({"continuous"})

    @classmethod
    def mismatch(cls, latent: LatentSpec, config: DIPVAEConfig, closed_form_kl: bool) -> str | None:
        if latent.kind == "continuous" and len(latent.shape) != 1:
            return f"needs a continuous latent vector (one axis) to take its covariance, got a {latent.describe()}"
        return super().mismatch(latent, config, closed_form_kl)

    @classmethod
    def encoder_mismatch(cls, posterior: type[Posterior]) -> str | None:
        if posterior is not DiagonalGaussian:
            return (f"takes the covariance of DiagonalGaussian posteriors' means and variances, but the encoder's "
                    f"posterior is {posterior.__name__}; pick an encoder whose posterior is a DiagonalGaussian "
                    f"(gaussian, gaussian-mlp)")
        return None

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        posterior = terms.posterior
        if not isinstance(posterior, DiagonalGaussian):
            raise UsageError(f"objective dipvae needs a DiagonalGaussian posterior (means and log-stds), got "
                             f"{type(posterior).__name__}; pick an encoder with a diagonal Gaussian posterior")
        config = self.config
        log_px = terms.log_px[0]
        kl = kl_per_image(terms)
        penalty = dip_penalty(dip_covariance(posterior, config.type), config.lambda_od, config.diagonal_weight)
        loss = (-log_px + kl).mean() + terms.aux + penalty
        stats = {"loss": loss.detach(), "nelbo": (kl - log_px).mean().detach(), "kl": kl.mean().detach(),
                 "dip_penalty": penalty.detach()}
        stats.update({k: v.detach() for k, v in terms.stats.items()})
        return loss, stats


PRESET = ("dipvae", "DIP-VAE-II (Kumar et al. 2018): the ELBO plus a penalty pulling the aggregate "
          "posterior's covariance to the identity", {})
