"""The combination importance-weighted autoencoder (Rainforth et al. 2018, "Tighter variational
bounds are not necessarily better", sec. 4): a convex combination of the ELBO and the IWAE bound
on the same K draws per image,

    loss = -(beta (1/K) sum_k log w_k + (1 - beta) (logsumexp_k log w_k - log K)) + aux

with log w = log p(x|z) + log p(z) - log q(z|x) (both terms from ``vaereg.objectives.iw_bound``:
the ELBO is K groups of one draw). beta = 0 is IWAE (Burda et al. 2016), beta = 1 the ELBO with a
Monte Carlo KL averaged over K draws. The defaults are the paper's MNIST comparison at 64 draws
(sec. 5, CIWAE beta = 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torch import Tensor

from vaereg import Objective, Range
from vaereg.model import Terms
from vaereg.objectives import iw_bound
from vaereg_zoo.miwae import MAX_DRAWS, bound_loss

PRESET = ("ciwae", "CIWAE (Rainforth et al. 2018): beta * ELBO + (1 - beta) * IWAE bound on the same K draws", {})


@dataclass
class CIWAEConfig:
    """``beta``: the ELBO's weight, the IWAE bound's being 1 - beta. ``iw_k``: draws per image,
    shared by both terms (as the iwae objective's ``iw_k``)."""

    beta: Annotated[float, Range(0, 1)] = 0.5
    iw_k: Annotated[int, Range(1, MAX_DRAWS)] = 64


class CIWAE(Objective):
    """beta * ELBO + (1 - beta) * IWAE on ``iw_k`` draws per image."""

    Config = CIWAEConfig

    @property
    def draws(self) -> int:
        return self.config.iw_k

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        beta, log_weights = self.config.beta, terms.log_weights()
        elbo = iw_bound(log_weights, log_weights.shape[0])
        iwae = iw_bound(log_weights)
        loss, stats = bound_loss(terms, beta * elbo + (1 - beta) * iwae, "ciwae_bound")
        stats.update({"nelbo": -elbo.mean().detach(), "iwae_bound": -iwae.mean().detach()})
        return loss, stats
