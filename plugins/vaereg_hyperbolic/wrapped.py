"""The wrapped normal on the Poincare ball (Mathieu et al. 2019, "Continuous Hierarchical
Representations with Poincare Variational Auto-Encoders", sec. 3.2 and appendix B.3; Nagano et
al. 2019): v ~ N(0, diag sigma^2) in the tangent space at the origin, transported to mu and
mapped onto the ball, z = exp_mu(P_{0->mu}(v / lambda_0)). The geodesic distance d_c(mu, z) is
|v|, and the density is

    log N_W(z; mu, sigma^2) = log N(v; 0, sigma^2) - (d - 1) log(sinh(sqrt(c) r) / (sqrt(c) r))
                              + d log lambda_z,    v = lambda_0 P_{mu->0}(log_mu z),  r = |v|.

Without the last term this is Mathieu et al.'s density against the ball's Riemannian volume;
with it, it is the density against Lebesgue measure on the ball's coordinates (the volume is
lambda_z^d dz), the measure every other vaereg part scores latents in, so a wrapped normal
posterior stays comparable with any continuous prior and the reverse."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor

from vaereg import Context, DataSpec, Encoder, LatentSpec, Posterior, Prior, Range
from vaereg.gaussian import normal_log_prob
from vaereg.parts import ForVector
from vaereg_hyperbolic.ball import PoincareBall, log_sinhc


def wrapped_normal_log_prob(z: Tensor, mean: Tensor, log_std: Tensor, ball: PoincareBall) -> Tensor:
    """log N_W(z; mean, exp(log_std)^2) against Lebesgue measure, summed over the last
    dimension: ``z`` ``[..., d]`` broadcast against ``mean`` and ``log_std`` -> ``[...]``."""
    d = z.shape[-1]
    v = 2 * ball.transport0_back(mean, ball.logmap(mean, z))  # lambda_0 = 2
    r = v.norm(dim=-1)
    return (normal_log_prob(v, torch.zeros_like(v), log_std).sum(-1)
            - (d - 1) * log_sinhc(ball.c**0.5 * r)
            + d * torch.log(ball.conformal_factor(z)).squeeze(-1))


def wrapped_normal_sample(mean: Tensor, log_std: Tensor, ball: PoincareBall, k: int) -> Tensor:
    """``k`` reparameterised draws ``[k, *mean.shape]``: z = exp_mu(P_{0->mu}(v / lambda_0))."""
    v = torch.randn((k, *mean.shape), device=mean.device, dtype=mean.dtype) * log_std.exp()
    return ball.expmap(mean, ball.transport0(mean, v / 2))


class WrappedNormal(Posterior):
    """q(z | x) = N_W(mean, diag exp(log_std)^2) on ``ball``: ``mean`` ``[B, d]`` on the ball,
    ``log_std`` ``[B, d]`` in the tangent space at the origin."""

    def __init__(self, mean: Tensor, log_std: Tensor, ball: PoincareBall):
        self.mean, self.log_std, self.ball = mean, log_std, ball

    def rsample(self, k: int) -> Tensor:
        return wrapped_normal_sample(self.mean, self.log_std, self.ball, k)

    def log_prob(self, z: Tensor) -> Tensor:
        return wrapped_normal_log_prob(z, self.mean, self.log_std, self.ball)

    def mode(self) -> Tensor:
        """mu: the Frechet mean, and the mode against the ball's Riemannian volume."""
        return self.mean


@dataclass
class WrappedNormalPriorConfig:
    """``sigma``: the prior's scale in every tangent direction (Mathieu et al. use N_W(0, 1))."""

    sigma: Annotated[float, Range(0.0, 100.0, open_low=True)] = 1.0


class WrappedNormalPrior(ForVector, Prior):
    """p(z) = N_W(0, sigma^2 I) on the paired encoder's ball, fixed; no closed-form KL to the
    wrapped normal posterior exists, so the KL is Monte Carlo. The ball, and so its curvature,
    is the encoder's (``encoder.ball``, set by its ``curvature``): one setting serves both, so
    they cannot disagree."""

    Config = WrappedNormalPriorConfig

    def __init__(self, data: DataSpec, latent: LatentSpec, config: WrappedNormalPriorConfig):
        super().__init__(data, latent, config)
        self.register_buffer("log_std", torch.full(latent.shape, math.log(config.sigma)), persistent=False)

    @classmethod
    def encoder_mismatch(cls, encoder: type[Encoder]) -> str | None:
        if not issubclass(encoder.posterior, WrappedNormal):
            return (f"lives on the Poincare ball, but the encoder's posterior {encoder.posterior.__name__} does not; "
                    f"pair it with an encoder whose posterior is a WrappedNormal (poincare)")
        return None

    def attach(self, encoder: Encoder) -> None:
        super().attach(encoder)
        self.ball: PoincareBall = encoder.ball

    def log_prob(self, z: Tensor, context: Context) -> Tensor:
        return wrapped_normal_log_prob(z, torch.zeros_like(self.log_std), self.log_std, self.ball)

    def sample(self, n: int, context: Context) -> Tensor:
        mean = self.log_std.new_zeros((n, *self.log_std.shape))
        return wrapped_normal_sample(mean, self.log_std.expand_as(mean), self.ball, 1)[0]
