"""The von Mises-Fisher posterior on the unit sphere S^{m-1} in R^m and the conv encoder that returns
it (Davidson et al. 2018, "Hyperspherical Variational Auto-Encoders").

q(z | mu, kappa) = C_m(kappa) exp(kappa mu.z),  C_m(kappa) = kappa^v / ((2 pi)^{m/2} I_v(kappa)),  v = m/2 - 1
(sec. 3.1). A draw is Wood's (1994) rejection sampler for w = mu.z, a uniform tangent direction and a
Householder reflection from e1 to mu (Algorithm 1); its gradient in kappa is the reparameterised part
through w = h(eps, kappa) at the accepted eps plus the correction of Naesseth et al. (2017, eq. 6),
Davidson et al. sec. 3.2: g_cor = E[f(z) d/dkappa log(q(h(eps, kappa); kappa) / r(h(eps, kappa); kappa))].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor, nn

from vaereg import Context, DataSpec, Encoder, LatentSpec, Posterior, Range, continuous
from vaereg.nets import conv_features
from vaereg_sphere.bessel import log_bessel

MAX_ROUNDS = 1000  # Wood's sampler accepts about two thirds or more of its proposals at any (m, kappa)
TINY, EPS = torch.finfo(torch.float64).tiny, torch.finfo(torch.float64).eps  # keep Beta draws inside (0, 1)


def log_normaliser(m: int, kappa: Tensor) -> Tensor:
    """log C_m(kappa) = v log kappa - (m/2) log 2 pi - log I_v(kappa), v = m/2 - 1."""
    v = m / 2 - 1
    return v * torch.log(kappa) - (m / 2) * math.log(2 * math.pi) - log_bessel(v, kappa)


class VonMisesFisher(Posterior):
    """vMF(mu, kappa) per image: unit mean directions ``mu`` ``[B, m]`` and concentrations ``kappa`` ``[B]``.
    A draw remembers g = log q(w) - log r(w) (up to terms free of kappa) of its accepted proposals for
    ``correction``."""

    def __init__(self, mu: Tensor, kappa: Tensor):
        self.mu, self.kappa = mu, kappa
        self.m = mu.shape[-1]
        self._g: Tensor | None = None

    def rsample(self, k: int) -> Tensor:
        w, radius, g = self._sample_w(k)
        self._g = g
        tangent = torch.randn((k, *self.mu.shape[:-1], self.m - 1), device=self.mu.device, dtype=self.mu.dtype)
        tangent = tangent / tangent.norm(dim=-1, keepdim=True)
        return self._reflect(torch.cat([w[..., None], radius[..., None] * tangent], -1))

    def _sample_w(self, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """w = mu.z ``[k, B]`` by Wood's sampler, differentiable in kappa through h(eps, kappa) at the
        accepted eps; sqrt(1 - w^2); and g. Taken in float64 (1 - w ~ (m - 1) / (2 kappa) is small at large
        kappa), and returned in mu's dtype."""
        m1 = self.m - 1
        eps = self._accepted_eps(k)
        kappa = self.kappa.double().expand(k, *self.kappa.shape)
        # b = (-2 kappa + sqrt(4 kappa^2 + (m-1)^2)) / (m-1), written without cancellation
        b = m1 / (2 * kappa + torch.sqrt(4 * kappa.square() + m1 ** 2))
        denominator = 1 - (1 - b) * eps
        w = (1 - (1 + b) * eps) / denominator
        # 1 - w^2 = 4 b eps (1 - eps) / denominator^2, exact where w is close to 1
        log_1mw2 = torch.log(4 * b * eps * (1 - eps)) - 2 * torch.log(denominator)
        # log q(w; kappa) = log C_m(kappa) + kappa w + ((m-3)/2) log(1 - w^2) + const; the proposal of w is
        # r(w) = s(eps) / |dh/deps| with |dh/deps| = 2b / denominator^2 and s(eps) the Beta density, free of kappa
        log_q = log_normaliser(self.m, kappa) + kappa * w + (m1 - 2) / 2 * log_1mw2
        log_r = 2 * torch.log(denominator) - torch.log(2 * b)
        dtype = self.mu.dtype
        return w.to(dtype), torch.exp(log_1mw2 / 2).to(dtype), (log_q - log_r).to(dtype)

    @torch.no_grad()
    def _accepted_eps(self, k: int) -> Tensor:
        """The accepted Beta((m-1)/2, (m-1)/2) proposals ``[k, B]`` of Wood's (1994) sampler, in float64."""
        kappa = self.kappa.detach().double().expand(k, *self.kappa.shape).reshape(-1)
        if not bool(torch.isfinite(kappa).all()) or not bool((kappa > 0).all()):
            raise ValueError("the vMF concentration kappa must be finite and positive")
        m1 = self.m - 1
        b = m1 / (2 * kappa + torch.sqrt(4 * kappa.square() + m1 ** 2))
        one_minus_x0 = 2 * b / (1 + b)  # x0 = (1 - b) / (1 + b)
        c = kappa * (1 - one_minus_x0) + m1 * (torch.log(4 * b) - 2 * torch.log1p(b))  # kappa x0 + (m-1) log(1-x0^2)
        beta = torch.distributions.Beta(torch.tensor(m1 / 2, dtype=torch.float64, device=kappa.device),
                                        torch.tensor(m1 / 2, dtype=torch.float64, device=kappa.device))
        eps = torch.empty_like(kappa)
        pending = torch.arange(kappa.numel(), device=kappa.device)
        for _ in range(MAX_ROUNDS):
            if pending.numel() == 0:
                return eps.clamp(TINY, 1 - EPS).view(k, *self.kappa.shape)
            e = beta.sample((pending.numel(),))
            bp, kp = b[pending], kappa[pending]
            denominator = 1 - (1 - bp) * e
            one_minus_w = 2 * bp * e / denominator
            # accept when kappa w + (m-1) log(1 - x0 w) - c >= log u, with 1 - x0 w = (1 - x0) + x0 (1 - w)
            x0 = 1 - one_minus_x0[pending]
            score = kp * (1 - one_minus_w) + m1 * torch.log(one_minus_x0[pending] + x0 * one_minus_w) - c[pending]
            accept = score >= torch.log(torch.rand_like(e))
            eps[pending[accept]] = e[accept]
            pending = pending[~accept]
        raise RuntimeError(f"Wood's sampler left {pending.numel()} draws unaccepted after {MAX_ROUNDS} rounds")

    def _reflect(self, z: Tensor) -> Tensor:
        """An orthogonal map sending e1 to mu, applied to ``z`` ``[k, B, m]``: the Householder reflection
        along u = e1 - mu where mu_1 <= 0, else minus the one along u = e1 + mu (|u|^2 >= 2 either way)."""
        sign = torch.where(self.mu[..., :1] > 0, -1.0, 1.0).to(self.mu)
        u = -sign * self.mu
        u = torch.cat([u[..., :1] + 1, u[..., 1:]], -1)
        u = u / u.norm(dim=-1, keepdim=True)
        return sign * (z - 2 * u * (z * u).sum(-1, keepdim=True))

    def correction(self, log_px: Tensor) -> Tensor:
        """-mean(log p(x|z) * (g - stop_gradient(g))) over draws and images, as the loss averages
        -log p(x|z): zero, with gradient -E[log p(x|z) dg/dkappa], so that minimising the loss ascends
        the correction term of the ELBO's gradient. It corrects the gradient of E[log p(x|z)] only: a
        KL estimated from the draws (no closed form) would need the same term."""
        if self._g is None:
            return torch.zeros((), device=log_px.device)
        g = self._g
        return -(log_px.detach() * (g - g.detach())).mean()

    def stats(self) -> dict[str, Tensor]:
        return {"kappa": self.kappa.detach().mean()}

    def log_prob(self, z: Tensor) -> Tensor:
        return self.kappa * (z * self.mu).sum(-1) + log_normaliser(self.m, self.kappa)

    def mode(self) -> Tensor:
        return self.mu


@dataclass
class VMFEncoderConfig:
    """``latent_dim`` m: the latent lies on S^{m-1} in R^m. Davidson et al. find the hyperspherical VAE
    ahead of the Gaussian one on MNIST in low dimensions and behind it by m = 40 (their table 2), as
    the sphere's surface area vanishes with m; 10 lies among their wins. ``width``: the conv trunk's
    channels, as the Gaussian encoder's."""

    latent_dim: Annotated[int, Range(2, 256)] = 10
    width: Annotated[int, Range(1, 1024)] = 64


class VMFEncoder(Encoder):
    """Strided 3x3 convolutions down to at most 4x4, then a linear map to (mu, kappa): mu is the
    normalised first m outputs and kappa = softplus(last) + 1 (as in Davidson et al.'s code, where
    the + 1 keeps the posterior from collapsing onto the uniform prior)."""

    Config = VMFEncoderConfig
    posterior = VonMisesFisher

    @classmethod
    def latent_spec(cls, data: DataSpec, config: VMFEncoderConfig) -> LatentSpec:
        return continuous(config.latent_dim)

    def __init__(self, data: DataSpec, latent: LatentSpec, config: VMFEncoderConfig):
        super().__init__(data, latent, config)
        self.trunk, self.condition, features = conv_features(data, config.width)
        self.head = nn.Linear(features, config.latent_dim + 1)

    def forward(self, x: Tensor, context: Context) -> VonMisesFisher:
        out = self.head(self.condition(self.trunk(x), context))
        mu = nn.functional.normalize(out[:, :-1], dim=-1)
        return VonMisesFisher(mu, nn.functional.softplus(out[:, -1]) + 1)
