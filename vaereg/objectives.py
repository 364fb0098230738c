"""Objectives: pure reductions of the model's ``Terms``. The training loss (ELBO with beta, KL
warm-up and free bits, or the IWAE-k bound), the negative ELBO, and the importance-sampled NLL
accumulated over chunks of draws in float64. A new objective never touches a part."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor

from vaereg.config import Range
from vaereg.errors import UsageError
from vaereg.model import VAE, Batch, Terms
from vaereg.parts import Posterior
from vaereg.specs import LatentSpec


@dataclass
class ObjectiveConfig:
    """``warmup``: fraction of training over which the KL weight rises linearly from 0 to
    ``beta``. ``free_bits``: nats per latent dimension below which KL is not penalised
    (Kingma et al. 2016, batch-averaged per dimension). ``kl_balance``: while warming up,
    weight each level of a hierarchy by its share of the KL (NVAE, Vahdat & Kautz 2020, sec. 3.2),
    so no level collapses early. ``iw_k > 1`` trains the IWAE bound (Burda et al. 2016)
    instead of the ELBO. Free bits and KL balancing need a closed-form KL per dimension."""

    beta: Annotated[float, Range(0, 1e6)] = 1.0
    warmup: Annotated[float, Range(0, 1)] = 0.0
    free_bits: Annotated[float, Range(0, 1e3)] = 0.0
    kl_balance: bool = False
    iw_k: Annotated[int, Range(1, 4096)] = 1

    def __post_init__(self) -> None:
        if self.free_bits > 0 and self.kl_balance:
            raise ValueError("free_bits and kl_balance both reshape the KL; set one of them, not both")

    def kl_weight(self, progress: float) -> float:
        if self.warmup <= 0:
            return self.beta
        return self.beta * min(1.0, progress / self.warmup)

    def check(self, closed_form_kl: bool, what: str) -> None:
        """Refuse options that cannot apply to a model whose KL is (not) in closed form."""
        if closed_form_kl:
            return
        for name, on in (("free_bits", self.free_bits > 0), ("kl_balance", self.kl_balance)):
            if on:
                raise UsageError(
                    f"objective.{name} needs a closed-form KL per latent dimension, and {what} has none "
                    f"(its KL is Monte Carlo); drop objective.{name} or pick a prior with a registered KL pair"
                )


def kl_per_image(terms: Terms) -> Tensor:
    """KL(q || p) per image ``[B]``: closed form when the pair has one, else the one-draw Monte
    Carlo estimate log q - log p (for a point mass, -log p: its rate)."""
    if terms.kl is not None:
        return terms.kl.flatten(1).sum(1)
    return (terms.log_qz - terms.log_pz)[0]


def kl_per_level(latent: LatentSpec, kl: Tensor) -> Tensor:
    """KL per level ``[B, L]`` from the per-dimension KL ``[B, ...]`` (a flat latent is one level)."""
    return torch.stack([level.flatten(1).sum(1) for level in latent.split(kl)], 1)


def balanced(levels: Tensor) -> Tensor:
    """Per-image KL ``[B]`` with level l weighted by gamma_l = L * kl_l / sum_j kl_j, kl_l its
    batch mean (detached): levels that carry little information are penalised less."""
    share = levels.mean(0).detach() + 1e-6
    return (levels * (share / share.mean())).sum(1)


def training_loss(
    terms: Terms, config: ObjectiveConfig, progress: float, latent: LatentSpec
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss to minimise, and detached per-batch stats (means over images), from the terms of
    ``config.iw_k`` draws per image."""
    if config.iw_k > 1:
        bound = torch.logsumexp(terms.log_weights(), 0) - math.log(terms.log_px.shape[0])
        loss = -bound.mean() + terms.aux
        return loss, {"loss": loss.detach(), "iwae_bound": -bound.mean().detach()}
    if (config.free_bits > 0 or config.kl_balance) and terms.kl is None:
        raise UsageError("objective.free_bits and objective.kl_balance need a closed-form KL; this model has none")
    log_px = terms.log_px[0]
    kl = kl_per_image(terms)
    penalty = kl
    if config.free_bits > 0:
        penalty = terms.kl.flatten(1).mean(0).clamp(min=config.free_bits).sum().expand_as(kl)
    elif config.kl_balance and progress < config.warmup and latent.levels:
        penalty = balanced(kl_per_level(latent, terms.kl))
    loss = (-log_px + config.kl_weight(progress) * penalty).mean() + terms.aux
    stats = {"loss": loss.detach(), "nelbo": (kl - log_px).mean().detach(), "kl": kl.mean().detach()}
    if terms.kl is not None and latent.levels:
        per_level = kl_per_level(latent, terms.kl).mean(0).detach()
        stats.update({f"kl_z{i + 1}": value for i, value in enumerate(per_level)})
    stats.update({k: v.detach() for k, v in terms.stats.items()})
    return loss, stats


def negative_elbo(terms: Terms) -> Tensor:
    """Negative ELBO per image ``[B]`` in nats (float64) from the first draw, prior term included."""
    return (kl_per_image(terms) - terms.log_px[0]).double()


def log_mean_weight(terms: Terms) -> Tensor:
    """logsumexp_i log w_i - log k per image ``[B]``, in float64."""
    return torch.logsumexp(terms.log_weights().double(), 0) - math.log(terms.log_px.shape[0])


@torch.no_grad()
def importance_nll(model: VAE, batch: Batch, k: int, chunk: int, posterior: Posterior | None = None) -> Tensor:
    """-log p(x | context) per image ``[B]`` by importance sampling with q(z|x) as proposal
    (``posterior`` when the caller has encoded the batch already): log p(x) ~= logsumexp_i(log w_i)
    - log k over ``k`` draws taken ``chunk`` at a time, accumulated in float64. A deterministic
    posterior needs one draw (the bound)."""
    posterior = posterior if posterior is not None else model.encode(batch)
    if posterior.deterministic:
        k = 1
    running = None
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        part = log_mean_weight(model.terms(batch, posterior, n)) + math.log(n)
        running = part if running is None else torch.logaddexp(running, part)
    return -(running - math.log(k))
