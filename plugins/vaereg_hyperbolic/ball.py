"""The Poincare ball B_c^d = {x : c |x|^2 < 1}, the hyperbolic space of curvature -c in the
coordinates of the unit-free Euclidean ball (Ganea et al. 2018, "Hyperbolic Neural Networks",
sec. 2; Mathieu et al. 2019, sec. 2 and appendix B).

Points are the last dimension of a tensor; leading dimensions broadcast. Norms are kept inside
the ball by a margin of sqrt(machine epsilon) of the radius, and artanh's argument below 1, so
every map stays finite in float32."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

MIN_NORM = 1e-15  # below this a tangent vector is treated as zero (its direction is arbitrary)


def _norm(x: Tensor) -> Tensor:
    return x.norm(dim=-1, keepdim=True).clamp_min(MIN_NORM)


def artanh(x: Tensor) -> Tensor:
    """artanh with its argument clamped into (-1, 1) by one machine epsilon."""
    eps = torch.finfo(x.dtype).eps
    x = x.clamp(-1 + eps, 1 - eps)
    return 0.5 * (torch.log1p(x) - torch.log1p(-x))


def log_sinhc(x: Tensor) -> Tensor:
    """log(sinh(x) / x) for x >= 0, stable at 0 and for large x."""
    small = x.clamp(MIN_NORM, 1.0)
    large = x.clamp_min(1.0)
    return torch.where(
        x < 1.0,
        torch.log(torch.sinh(small) / small),
        large + torch.log1p(-torch.exp(-2 * large)) - torch.log(2 * large),
    )


@dataclass(frozen=True)
class PoincareBall:
    """The ball of curvature ``-c``: its Mobius addition, conformal factor, exponential and
    logarithmic maps, geodesic distance and parallel transport from the origin."""

    c: float = 1.0

    def project(self, x: Tensor) -> Tensor:
        """``x`` pulled inside the ball: norms at most ``(1 - sqrt(eps)) / sqrt(c)``."""
        limit = (1 - torch.finfo(x.dtype).eps ** 0.5) / self.c ** 0.5
        norm = _norm(x)
        return torch.where(norm > limit, x / norm * limit, x)

    def conformal_factor(self, x: Tensor) -> Tensor:
        """lambda_x = 2 / (1 - c |x|^2) ``[..., 1]``: the metric at ``x`` is lambda_x^2 times Euclid's."""
        return 2 / (1 - self.c * x.square().sum(-1, keepdim=True)).clamp_min(torch.finfo(x.dtype).eps)

    def mobius_add(self, x: Tensor, y: Tensor) -> Tensor:
        """x (+)_c y = ((1 + 2c<x,y> + c|y|^2) x + (1 - c|x|^2) y) / (1 + 2c<x,y> + c^2|x|^2|y|^2)
        (Ganea et al. 2018, eq. 3)."""
        c = self.c
        xy = (x * y).sum(-1, keepdim=True)
        x2 = x.square().sum(-1, keepdim=True)
        y2 = y.square().sum(-1, keepdim=True)
        numerator = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
        return numerator / (1 + 2 * c * xy + c**2 * x2 * y2).clamp_min(MIN_NORM)

    def expmap(self, x: Tensor, v: Tensor) -> Tensor:
        """exp_x(v) = x (+)_c tanh(sqrt(c) lambda_x |v| / 2) v / (sqrt(c) |v|) (Ganea et al. 2018, lemma 2)."""
        sqrt_c, norm = self.c**0.5, _norm(v)
        step = torch.tanh(sqrt_c * self.conformal_factor(x) * norm / 2) * v / (sqrt_c * norm)
        return self.project(self.mobius_add(x, step))

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        """log_x(y) = 2 / (sqrt(c) lambda_x) artanh(sqrt(c) |w|) w / |w| with w = (-x) (+)_c y."""
        sqrt_c = self.c**0.5
        w = self.mobius_add(-x, y)
        norm = _norm(w)
        return 2 / (sqrt_c * self.conformal_factor(x)) * artanh(sqrt_c * norm) * w / norm

    def expmap0(self, v: Tensor) -> Tensor:
        """exp_0(v) = tanh(sqrt(c) |v|) v / (sqrt(c) |v|): ``expmap`` at the origin, where lambda_0 = 2."""
        sqrt_c, norm = self.c**0.5, _norm(v)
        return self.project(torch.tanh(sqrt_c * norm) * v / (sqrt_c * norm))

    def logmap0(self, y: Tensor) -> Tensor:
        """log_0(y) = artanh(sqrt(c) |y|) y / (sqrt(c) |y|)."""
        sqrt_c, norm = self.c**0.5, _norm(y)
        return artanh(sqrt_c * norm) * y / (sqrt_c * norm)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        """d_c(x, y) = (2 / sqrt(c)) artanh(sqrt(c) |(-x) (+)_c y|) ``[...]`` (Ganea et al. 2018, eq. 5)."""
        sqrt_c = self.c**0.5
        return 2 / sqrt_c * artanh(sqrt_c * self.mobius_add(-x, y).norm(dim=-1))

    def transport0(self, mu: Tensor, v: Tensor) -> Tensor:
        """Parallel transport of ``v`` from the origin to ``mu`` along their geodesic:
        P_{0->mu}(v) = (lambda_0 / lambda_mu) v (the gyration is the identity at the origin)."""
        return 2 / self.conformal_factor(mu) * v

    def transport0_back(self, mu: Tensor, u: Tensor) -> Tensor:
        """Parallel transport of ``u`` from ``mu`` back to the origin: (lambda_mu / lambda_0) u."""
        return self.conformal_factor(mu) / 2 * u
