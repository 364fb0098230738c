"""Hamiltonian VAE (Caterini, Doucet & Sejdinovic 2018, "Hamiltonian Variational Auto-Encoder",
Algorithm 1; tempered: Algorithm 2).

The encoder's reparameterised draw z_0 ~ q(z|x) and a momentum gamma_0 ~ N(0, I) start a
deterministic flow: rho_0 = gamma_0 / sqrt(beta_0), then K leapfrog steps on the potential
U(z) = -log p(x, z) = -(log p(x|z) + log p(z)) with a learned step size epsilon per latent dimension,

    rho~ = rho_{k-1} - epsilon/2 * grad U(z_{k-1});   z_k = z_{k-1} + epsilon * rho~;
    rho' = rho~ - epsilon/2 * grad U(z_k);            rho_k = sqrt(beta_{k-1} / beta_k) rho',

after each of which the momentum is cooled by the quadratic schedule (Section 4)

    1 / sqrt(beta_k) = (1 - 1 / sqrt(beta_0)) k^2 / K^2 + 1 / sqrt(beta_0),   so beta_K = 1.

The ELBO estimate per image (eq. 10 with the flow's Jacobian) is

    log p(x, z_K) + log N(rho_K; 0, I) - log q(z_0|x) - log N(gamma_0; 0, I).

Why no tempering term is left: the augmented ELBO is log p(x, z_K) N(rho_K) - log q(z_0, rho_0)
+ log |det J|, with rho_0 ~ N(0, I / beta_0). Each leapfrog step is symplectic (|det| = 1) and
each rescaling multiplies d momenta by sqrt(beta_{k-1} / beta_k), so |det J| = prod_k
(beta_{k-1} / beta_k)^{d/2} = (beta_0 / beta_K)^{d/2} = beta_0^{d/2}. Written in gamma_0 =
sqrt(beta_0) rho_0, the momentum's density is N(rho_0; 0, I / beta_0) = beta_0^{d/2} N(gamma_0; 0, I),
and its beta_0^{d/2} cancels the Jacobian's.

Gradients of U come from ``torch.autograd.grad(create_graph=True)``, so the loss reaches the
encoder, decoder, prior, epsilon and beta_0 through the whole flow. epsilon is
``max_step_size * sigmoid(.)`` and beta_0 ``sigmoid(.)``, the authors' parameterisation; their
MNIST runs start at epsilon = 0.2 (at most 0.5) and T_0 = 1 / beta_0 = 1.5, and sweep K over
{1, 5, 10, 15, 20}; the default K = 5 is the cheapest tempered setting they report.

The flow needs the decoder, likelihood and prior: ``steps`` binds the model and returns one step
over the model's parameters, epsilon and beta_0. The harness still reports the model's own
(un-flowed) negative ELBO and importance-sampled NLL.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor, nn

from vaereg import DiagonalGaussian, Objective, Posterior, Range, Step, UsageError
from vaereg.gaussian import HALF_LOG_2PI
from vaereg.model import VAE, Terms
from vaereg.objectives import vector_mismatch
from vaereg.specs import LatentSpec

PRESET = ("hvae", "Hamiltonian VAE (Caterini et al. 2018): the ELBO of the encoder's draw moved by K tempered "
          "leapfrog steps on log p(x, z), with learned step sizes and initial temperature", {})

#: U(z) per image ``[B]`` for latents ``[B, d]``.
Potential = Callable[[Tensor], Tensor]


@dataclass
class HVAEConfig:
    """``leapfrog``: K, the leapfrog steps. ``tempering``: cool the momentum from beta_0 to 1 over
    the K steps (Algorithm 2), else beta = 1 throughout (Algorithm 1). ``step_size``: the initial
    epsilon of every latent dimension, learned below ``max_step_size``. ``beta_0``: the initial
    inverse temperature, learned in (0, 1)."""

    leapfrog: Annotated[int, Range(0, 100)] = 5
    tempering: bool = True
    step_size: Annotated[float, Range(0, None, open_low=True)] = 0.2
    max_step_size: Annotated[float, Range(0, None, open_low=True)] = 0.5
    beta_0: Annotated[float, Range(0, 1, open_low=True)] = 1 / 1.5

    def __post_init__(self) -> None:
        if self.step_size >= self.max_step_size:
            raise ValueError(f"step_size ({self.step_size:g}) must be below max_step_size ({self.max_step_size:g})")
        if self.tempering and self.beta_0 >= 1:
            raise ValueError("beta_0 = 1 is no tempering; set beta_0 below 1, or tempering=false")
        if self.tempering and self.leapfrog == 0:
            raise ValueError("tempering cools beta_0 to 1 over the leapfrog steps; set leapfrog >= 1, or "
                             "tempering=false")


def sqrt_beta_schedule(beta_0: Tensor, steps: int) -> Tensor:
    """sqrt(beta_k) for k = 0..K ``[K + 1]``: the quadratic schedule of Algorithm 2, from beta_0 to 1."""
    k = torch.arange(steps + 1, dtype=beta_0.dtype, device=beta_0.device)
    inverse = beta_0.rsqrt()
    return 1 / ((1 - inverse) * (k / steps).square() + inverse)


def potential_and_grad(potential: Potential, z: Tensor) -> tuple[Tensor, Tensor]:
    """U(z) ``[B]`` and dU/dz ``[B, d]``, differentiable in turn (create_graph)."""
    with torch.enable_grad():
        if not z.requires_grad:
            z = z.detach().requires_grad_()
        u = potential(z)
        (grad,) = torch.autograd.grad(u.sum(), z, create_graph=True)
    return u, grad


def hamiltonian_flow(z: Tensor, rho: Tensor, potential: Potential, step_size: Tensor, steps: int,
                     rescale: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(z_K, rho_K, U(z_K)) after ``steps`` leapfrog steps of size ``step_size`` (per dimension)
    from (z, rho), each followed by the momentum's rescaling ``rescale[k]`` when given (Algorithm 2:
    sqrt(beta_k / beta_{k+1})). Each step reuses the gradient at its start from the step before."""
    u, grad = None, None
    for k in range(steps):
        if grad is None:
            u, grad = potential_and_grad(potential, z)
        rho = rho - 0.5 * step_size * grad
        z = z + step_size * rho
        u, grad = potential_and_grad(potential, z)
        rho = rho - 0.5 * step_size * grad
        if rescale is not None:
            rho = rho * rescale[k]
    return z, rho, potential(z) if u is None else u


def standard_normal_log_prob(v: Tensor) -> Tensor:
    """log N(v; 0, I) per image ``[B]``."""
    return (-0.5 * v.square() - HALF_LOG_2PI).sum(1)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class HVAE(Objective):
    """The negative HVAE ELBO of one flowed draw per image, plus the encoder's aux loss."""

    Config = HVAEConfig
    latent_kinds = frozenset({"continuous"})

    def __init__(self, data, latent: LatentSpec, config: HVAEConfig, closed_form_kl: bool):
        super().__init__(data, latent, config, closed_form_kl)
        self.step_logit = nn.Parameter(torch.full(latent.shape, _logit(config.step_size / config.max_step_size)))
        self.beta_logit = nn.Parameter(torch.tensor(_logit(config.beta_0))) if config.tempering else None

    @classmethod
    def mismatch(cls, latent: LatentSpec, config: HVAEConfig, closed_form_kl: bool) -> str | None:
        return vector_mismatch(latent, "leapfrog steps move it in R^d")

    @classmethod
    def encoder_mismatch(cls, posterior: type[Posterior]) -> str | None:
        if not issubclass(posterior, DiagonalGaussian):
            return (f"starts its flow from a reparameterised Gaussian draw with a density, but the encoder's "
                    f"posterior is {posterior.__name__}; pick an encoder with a DiagonalGaussian posterior "
                    f"(gaussian, gaussian-mlp)")
        return None

    @property
    def step_size(self) -> Tensor:
        """epsilon per latent dimension ``[d]``."""
        return self.config.max_step_size * torch.sigmoid(self.step_logit)

    @property
    def beta_0(self) -> Tensor:
        """The initial inverse temperature (1 without tempering)."""
        if self.beta_logit is None:
            return torch.ones((), device=self.step_logit.device)
        return torch.sigmoid(self.beta_logit)

    def steps(self, model: VAE, trained: list[nn.Parameter]) -> list[Step]:
        return [Step("model", [*trained, *self.parameters()], self.loss)]

    def elbo(self, terms: Terms) -> Tensor:
        """The HVAE ELBO estimate per image ``[B]`` from the first draw of ``terms``."""
        model = terms.model
        if model is None:
            raise UsageError("objective hvae differentiates log p(x, z) through the model; give it the terms "
                             "VAE.forward returns (terms.model)")
        x, context, posterior = terms.batch.x, terms.batch.context, terms.posterior
        prior = model.active_prior
        prior.prepare()

        def potential(z: Tensor) -> Tensor:
            params = model.decoder(posterior.decoder_input(z[None]), context)
            return -(model.likelihood.log_prob(x, params, context) + prior.log_prob(z, context))

        steps = self.config.leapfrog
        z_0 = terms.z[0]
        gamma_0 = torch.randn_like(z_0)
        rho_0, rescale = gamma_0, None
        if self.beta_logit is not None:
            sqrt_beta = sqrt_beta_schedule(self.beta_0, steps)
            rho_0, rescale = gamma_0 / sqrt_beta[0], sqrt_beta[:-1] / sqrt_beta[1:]
        _, rho_k, u_k = hamiltonian_flow(z_0, rho_0, potential, self.step_size, steps, rescale)
        # the flow's Jacobian beta_0^{d/2} cancels rho_0's density written in gamma_0 (module docstring)
        momentum = standard_normal_log_prob(rho_k) - standard_normal_log_prob(gamma_0)
        return -u_k + momentum - terms.log_qz[0]

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        nelbo = -self.elbo(terms).mean()
        loss = nelbo + terms.aux
        stats = {"loss": loss.detach(), "hvae_nelbo": nelbo.detach(), "step_size": self.step_size.mean().detach(),
                 "beta_0": self.beta_0.detach()}
        stats.update({k: v.detach() for k, v in terms.stats.items()})
        return loss, stats
