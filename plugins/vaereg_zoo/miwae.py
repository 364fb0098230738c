"""The multiply importance-weighted autoencoder (Rainforth et al. 2018, "Tighter variational bounds
are not necessarily better", sec. 4): the mean of M independent K-draw IWAE bounds,

    loss = -(1/M) sum_m (logsumexp_k log w_{m,k} - log K) + aux,   log w = log p(x|z) + log p(z) - log q(z|x)

on M*K draws per image (``vaereg.objectives.iw_bound`` with M groups). M = 1 is IWAE (Burda et al.
2016), K = 1 the ELBO with a Monte Carlo KL averaged over M draws. A looser bound than IWAE on the
same M*K draws, whose encoder gradients have a higher signal-to-noise ratio. The defaults are the
paper's MNIST comparison at M*K = 64 draws (sec. 5, MIWAE(8, 8)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torch import Tensor

from vaereg import Objective, Range
from vaereg.model import Terms
from vaereg.objectives import iw_bound

PRESET = ("miwae", "MIWAE (Rainforth et al. 2018): the mean of M independent K-draw IWAE bounds", {})

#: Draws per image the family allows, as the built-in iwae's iw_k does.
MAX_DRAWS = 4096


@dataclass
class MIWAEConfig:
    """``iw_m``: independent bounds averaged (the paper's M). ``iw_k``: importance samples in each
    (its K, as the iwae objective's ``iw_k``). Each image takes ``iw_m * iw_k`` draws."""

    iw_m: Annotated[int, Range(1, MAX_DRAWS)] = 8
    iw_k: Annotated[int, Range(1, MAX_DRAWS)] = 8

    def __post_init__(self) -> None:
        if self.iw_m * self.iw_k > MAX_DRAWS:
            raise ValueError(f"iw_m * iw_k = {self.iw_m * self.iw_k} draws per image; keep it at most {MAX_DRAWS}")

    @property
    def draws(self) -> int:
        return self.iw_m * self.iw_k


def bound_loss(terms: Terms, bound: Tensor, name: str) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss -bound + aux from a per-image ``bound`` ``[B]``, and its stats: ``loss``, the
    negated bound as ``name`` (nats, as the iwae objective's ``iwae_bound``), the posterior's."""
    bound = bound.mean()
    loss = -bound + terms.aux
    stats = {"loss": loss.detach(), name: -bound.detach()}
    stats.update({k: v.detach() for k, v in terms.stats.items()})
    return loss, stats


class MIWAE(Objective):
    """The MIWAE(M, K) bound on M*K draws per image."""

    Config = MIWAEConfig

    @property
    def draws(self) -> int:
        return self.config.draws

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        return bound_loss(terms, iw_bound(terms.log_weights(), self.config.iw_m), "miwae_bound")
