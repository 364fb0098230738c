"""The evidence lower bound with the usual reshapings of its KL term (Kingma & Welling 2014):

    loss = -log p(x|z) + w(t) * KL(q(z|x) || p(z)) + aux

``w(t)`` rises linearly from 0 to ``beta`` over the first ``warmup`` of training (beta-VAE,
Higgins et al. 2017; warm-up, Sonderby et al. 2016). ``free_bits`` (Kingma et al. 2016) stops
penalising a dimension's batch-averaged KL below that many nats. ``kl_balance`` (NVAE, Vahdat &
Kautz 2020, sec. 3.2) weights each level of a hierarchy by its share of the KL while warming up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from torch import Tensor

from vaereg import Objective, Range
from vaereg.model import Terms
from vaereg.objectives import kl_per_image, kl_per_level
from vaereg.specs import LatentSpec


@dataclass
class ELBOConfig:
    """``warmup``: fraction of training over which the KL weight rises from 0 to ``beta``.
    ``free_bits``: nats per latent dimension below which KL is not penalised. ``kl_balance``:
    weight each level of a hierarchy by its share of the KL while warming up. Free bits and KL
    balancing need a closed-form KL per dimension."""

    beta: Annotated[float, Range(0, 1e6)] = 1.0
    warmup: Annotated[float, Range(0, 1)] = 0.0
    free_bits: Annotated[float, Range(0, 1e3)] = 0.0
    kl_balance: bool = False

    moved: ClassVar[dict[str, str]] = {
        "iw_k": "the IWAE bound is the objective 'iwae'; write --combo C+objective=iwae --set objective.iw_k=K"}

    def __post_init__(self) -> None:
        if self.free_bits > 0 and self.kl_balance:
            raise ValueError("free_bits and kl_balance both reshape the KL; set one of them, not both")

    def kl_weight(self, progress: float) -> float:
        if self.warmup <= 0:
            return self.beta
        return self.beta * min(1.0, progress / self.warmup)


def balanced(levels: Tensor) -> Tensor:
    """Per-image KL ``[B]`` with level l weighted by gamma_l = L * kl_l / sum_j kl_j, kl_l its
    batch mean (detached): levels that carry little information are penalised less."""
    share = levels.mean(0).detach() + 1e-6
    return (levels * (share / share.mean())).sum(1)


class ELBO(Objective):
    """The (beta-weighted, warmed-up) negative ELBO, with free bits or KL balancing."""

    Config = ELBOConfig

    @classmethod
    def mismatch(cls, latent: LatentSpec, config: ELBOConfig, closed_form_kl: bool) -> str | None:
        for name, on in (("free_bits", config.free_bits > 0), ("kl_balance", config.kl_balance)):
            if on and not closed_form_kl:
                return (f"objective.{name} needs a closed-form KL per latent dimension, and this model has none "
                        f"(its KL is Monte Carlo); drop objective.{name} or pick a prior with a registered KL pair")
        return super().mismatch(latent, config, closed_form_kl)

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        config, latent = self.config, self.latent
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
