"""Planar flows on the posterior (Rezende & Mohamed 2015, eq. 10-12, appendix A.1):
f(z) = z + u_hat tanh(w.z + b), log |det df/dz| = log |1 + u_hat.psi(z)| with
psi(z) = tanh'(w.z + b) w. The step is invertible when w.u_hat >= -1, which
u_hat = u + (m(w.u) - w.u) w / |w|^2 with m(x) = -1 + softplus(x) enforces."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import softplus

from vaereg_flows.amortised import AmortisedFlowEncoder, AmortisedFlowPosterior


def constrain(u: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """u_hat ``[N, D]`` of appendix A.1 and 1 + w.u_hat = softplus(w.u) ``[N]`` (> 0), the
    latter computed without cancellation."""
    wu = (w * u).sum(-1)
    lifted = softplus(wu)  # 1 + m(w.u)
    # |w|^2 clamped so a zero w (then w.u = 0 and the step is the identity) divides by no zero
    u_hat = u + ((lifted - 1 - wu) / w.square().sum(-1).clamp_min(1e-12))[:, None] * w
    return u_hat, lifted


def planar_step(z: Tensor, u: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """f(z) ``[N, D]`` and log |det df/dz| ``[N]`` for ``z``, ``u``, ``w`` ``[N, D]`` and ``b``
    ``[N]`` (u unconstrained)."""
    u_hat, lifted = constrain(u, w)
    t = torch.tanh((w * z).sum(-1) + b)
    # eq. 12 with tanh' = 1 - t^2 and w.u_hat = lifted - 1:
    # 1 + u_hat.psi = 1 + (1 - t^2)(lifted - 1) = t^2 + (1 - t^2) lifted, a sum of non-negative terms
    return z + u_hat * t[:, None], torch.log(t.square() + (1 - t.square()) * lifted)


class PlanarPosterior(AmortisedFlowPosterior):
    """q(z | x) through K planar steps, each with its own (u, w, b) per image."""

    flow = "planar"

    @staticmethod
    def params_per_step(dim: int) -> int:
        return 2 * dim + 1

    @staticmethod
    def step(z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        d = z.shape[1]
        u, w, b = params.split([d, d, 1], dim=1)
        return planar_step(z, u, w, b[:, 0])


class PlanarEncoder(AmortisedFlowEncoder):
    """A conv Gaussian encoder whose head also gives every planar step's (u, w, b) per image
    (amortised, as in the paper)."""

    posterior = PlanarPosterior
