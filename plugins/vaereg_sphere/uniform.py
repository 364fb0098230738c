"""The uniform prior on the unit sphere S^{m-1} in R^m and the closed-form KL(vMF || uniform)
(Davidson et al. 2018 derive it in their appendix)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaereg import Context, DataSpec, Encoder, LatentSpec, Prior
from vaereg.parts import ForVector
from vaereg_sphere.bessel import bessel_ratio
from vaereg_sphere.vmf import VonMisesFisher, log_normaliser


def log_sphere_area(m: int) -> float:
    """log of the surface area of S^{m-1}: log(2 pi^{m/2} / Gamma(m/2))."""
    return math.log(2) + m / 2 * math.log(math.pi) - math.lgamma(m / 2)


class UniformSphere(ForVector, Prior):
    """p(z) = 1 / area(S^{m-1}) on the unit sphere of the latent vector's space R^m. Its density is
    with respect to the sphere's surface measure, so it pairs only with a posterior on the sphere."""

    def __init__(self, data: DataSpec, latent: LatentSpec, config: object):
        super().__init__(data, latent, config)
        self.m = latent.shape[0]
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # follows .to(device)

    @classmethod
    def encoder_mismatch(cls, encoder: type[Encoder]) -> str | None:
        if not issubclass(encoder.posterior, VonMisesFisher):
            return (f"is a density on the unit sphere, but the encoder's posterior {encoder.posterior.__name__} "
                    f"is not on it; pair it with encoder vmf")
        return None

    def log_prob(self, z: Tensor, context: Context) -> Tensor:
        return torch.full(z.shape[:1], -log_sphere_area(self.m), device=z.device, dtype=z.dtype)

    def sample(self, n: int, context: Context) -> Tensor:
        z = torch.randn((n, self.m), device=self.anchor.device)
        return z / z.norm(dim=-1, keepdim=True)


def vmf_to_uniform_kl(q: VonMisesFisher, p: UniformSphere) -> Tensor:
    """KL(vMF(mu, kappa) || U(S^{m-1})) = kappa A_m(kappa) + log C_m(kappa) + log area(S^{m-1}), with
    A_m = I_{m/2} / I_{m/2-1}, in float64. The vMF does not factorise over dimensions, so the KL has no
    per-dimension split: it is spread evenly over the m dimensions ``[B, m]``, so that sums over them
    (the KL per image) are exact and no dimension looks more active than another."""
    m, kappa = q.m, q.kappa.double()
    kl = kappa * bessel_ratio(m / 2 - 1, kappa) + log_normaliser(m, kappa) + log_sphere_area(m)
    return (kl / m).to(q.mu.dtype)[:, None].expand(-1, m)
