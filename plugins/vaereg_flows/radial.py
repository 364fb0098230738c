"""Radial flows on the posterior (Rezende & Mohamed 2015, eq. 14, appendix A.2):
f(z) = z + beta h(alpha, r) (z - z0) with r = |z - z0| and h = 1 / (alpha + r), and
log |det df/dz| = (d - 1) log(1 + beta h) + log(1 + beta h + beta h'(r) r). alpha > 0 is a
softplus, and beta_hat = -alpha + softplus(beta) >= -alpha keeps the step invertible."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import softplus

from vaereg_flows.amortised import AmortisedFlowEncoder, AmortisedFlowPosterior


def constrain(alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """alpha = softplus(alpha_raw) > 0 and beta_hat = -alpha + softplus(beta) ``[N]``."""
    alpha = softplus(alpha)
    return alpha, softplus(beta) - alpha


def radial_step(z: Tensor, z0: Tensor, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """f(z) ``[N, D]`` and log |det df/dz| ``[N]`` for ``z``, ``z0`` ``[N, D]`` and unconstrained
    ``alpha``, ``beta`` ``[N]``."""
    alpha, beta_hat = constrain(alpha, beta)
    lifted = softplus(beta)  # alpha + beta_hat >= 0, computed without cancellation
    diff = z - z0
    r = torch.linalg.vector_norm(diff, dim=-1)
    log_h = -torch.log(alpha + r)
    # eq. 14 with h' = -h^2: 1 + beta h = (lifted + r) h and
    # 1 + beta h + beta h' r = 1 + beta alpha h^2 = (r (r + 2 alpha) + alpha lifted) h^2
    log_det = ((z.shape[1] - 1) * (torch.log(lifted + r) + log_h)
               + torch.log(r * (r + 2 * alpha) + alpha * lifted) + 2 * log_h)
    return z + (beta_hat * log_h.exp())[:, None] * diff, log_det


class RadialPosterior(AmortisedFlowPosterior):
    """q(z | x) through K radial steps, each with its own (z0, alpha, beta) per image."""

    flow = "radial"

    @staticmethod
    def params_per_step(dim: int) -> int:
        return dim + 2

    @staticmethod
    def step(z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        z0, alpha, beta = params.split([z.shape[1], 1, 1], dim=1)
        return radial_step(z, z0, alpha[:, 0], beta[:, 0])


class RadialEncoder(AmortisedFlowEncoder):
    """A conv Gaussian encoder whose head also gives every radial step's (z0, alpha, beta) per image
    (amortised, as in the paper)."""

    posterior = RadialPosterior
