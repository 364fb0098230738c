"""The importance-weighted bound (Burda et al. 2016, eq. 8) on ``iw_k`` draws per image:

    loss = -(logsumexp_k log w_k - log K) + aux,   log w = log p(x|z) + log p(z) - log q(z|x)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torch import Tensor

from vaereg import Objective, Range
from vaereg.model import Terms
from vaereg.objectives import iw_bound


@dataclass
class IWAEConfig:
    """``iw_k``: importance samples per image in the bound (1 is the ELBO)."""

    iw_k: Annotated[int, Range(1, 4096)] = 5


class IWAE(Objective):
    """The IWAE bound on ``iw_k`` draws per image."""

    Config = IWAEConfig

    @property
    def draws(self) -> int:
        return self.config.iw_k

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        bound = iw_bound(terms.log_weights()).mean()
        loss = -bound + terms.aux
        stats = {"loss": loss.detach(), "iwae_bound": -bound.detach()}
        stats.update({k: v.detach() for k, v in terms.stats.items()})
        return loss, stats
