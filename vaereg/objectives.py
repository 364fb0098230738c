"""Training objectives (ELBO with beta, KL warm-up and free bits; IWAE-k) and the
evaluation estimators (negative ELBO; importance-sampled NLL)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vaereg.model import VAE, Draw
from vaereg.parts import Posterior
from vaereg.specs import LatentSpec


@dataclass
class ObjectiveConfig:
    """``warmup``: fraction of training over which the KL weight rises linearly from 0 to
    ``beta``. ``free_bits``: nats per latent dimension below which KL is not penalised
    (Kingma et al. 2016, batch-averaged per dimension). ``kl_balance``: while warming up,
    weight each level of a hierarchy by its share of the KL (NVAE, Vahdat & Kautz 2020, sec. 3.2),
    so no level collapses early. ``iw_k > 1`` trains the IWAE bound (Burda et al. 2016)
    instead of the ELBO."""

    beta: float = 1.0
    warmup: float = 0.0
    free_bits: float = 0.0
    kl_balance: bool = False
    iw_k: int = 1

    def __post_init__(self) -> None:
        if self.iw_k < 1 or not 0 <= self.warmup <= 1 or self.beta < 0 or self.free_bits < 0:
            raise ValueError("need iw_k >= 1, 0 <= warmup <= 1, beta >= 0 and free_bits >= 0")

    def kl_weight(self, progress: float) -> float:
        if self.warmup <= 0:
            return self.beta
        return self.beta * min(1.0, progress / self.warmup)


def _kl(draw) -> Tensor:
    """Per-image KL(q || p): closed form when the prior offers one, else one-sample Monte Carlo."""
    if draw.posterior.deterministic:
        return torch.zeros(draw.x.shape[0], device=draw.x.device)
    if draw.kl is not None:
        return draw.kl.flatten(1).sum(1)
    return (draw.log_qz - draw.log_pz)[0]


def kl_per_level(latent: LatentSpec, kl: Tensor) -> Tensor:
    """KL per level ``[B, L]`` from the per-dimension KL ``[B, ...]`` (a flat latent is one level)."""
    return torch.stack([level.flatten(1).sum(1) for level in latent.split(kl)], 1)


def balanced(levels: Tensor) -> Tensor:
    """Per-image KL ``[B]`` with level l weighted by gamma_l = L * kl_l / sum_j kl_j, kl_l its
    batch mean (detached): levels that carry little information are penalised less."""
    share = levels.mean(0).detach() + 1e-6
    return (levels * (share / share.mean())).sum(1)


def training_loss(
    model: VAE, x: Tensor, config: ObjectiveConfig, progress: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss to minimise for stage 1 and detached per-batch stats (means over images)."""
    if config.iw_k > 1:
        draw = model.draw(x, config.iw_k)
        bound = torch.logsumexp(draw.log_weights(), 0) - math.log(config.iw_k)
        loss = -bound.mean() + draw.posterior.aux_loss()
        return loss, {"loss": loss.detach(), "iwae_bound": -bound.mean().detach()}
    draw = model.draw(x)
    log_px = draw.log_px[0]
    kl = _kl(draw)
    penalty = kl
    if config.free_bits > 0 and draw.kl is not None:
        penalty = draw.kl.mean(0).clamp(min=config.free_bits).sum().expand_as(kl)
    elif config.kl_balance and progress < config.warmup and draw.kl is not None and model.combo.latent.levels:
        penalty = balanced(kl_per_level(model.combo.latent, draw.kl))
    loss = (-log_px + config.kl_weight(progress) * penalty).mean() + draw.posterior.aux_loss()
    stats = {"loss": loss.detach(), "nelbo": (kl - log_px).mean().detach(), "kl": kl.mean().detach()}
    stats.update({k: v.detach() for k, v in draw.posterior.stats().items()})
    return loss, stats


@torch.no_grad()
def nelbo(model: VAE, x: Tensor) -> Tensor:
    """Negative ELBO per image ``[B]`` in nats (float64), prior term included."""
    return nelbo_of(model.draw(x))


def nelbo_of(draw: Draw) -> Tensor:
    """Negative ELBO per image of a one-sample ``draw`` (float64)."""
    if draw.posterior.deterministic or draw.kl is None:
        return -draw.log_weights()[0].double()
    return (_kl(draw) - draw.log_px[0]).double()


@torch.no_grad()
def importance_nll(model: VAE, x: Tensor, k: int, chunk: int, posterior: Posterior | None = None) -> Tensor:
    """-log p(x) per image ``[B]`` by importance sampling with q(z|x) as proposal (``posterior``
    when the caller has encoded ``x`` already): log p(x) ~= logsumexp_i(log w_i) - log k over
    ``k`` samples drawn ``chunk`` at a time, accumulated in float64. A deterministic posterior
    needs one sample (the bound)."""
    posterior = posterior if posterior is not None else model.encoder(x)
    if posterior.deterministic:
        k = 1
    running = None
    for start in range(0, k, chunk):
        lw = model.draw(x, min(chunk, k - start), posterior).log_weights().double()
        part = torch.logsumexp(lw, 0)
        running = part if running is None else torch.logaddexp(running, part)
    return -(running - math.log(k))
