"""WAE-MMD (Tolstikhin et al. 2018, Algorithm 2):

    loss = c(x, G(z)) + lambda MMD(q(z), p(z)) + aux

The cost c(x, G(z)) is the likelihood's negative log-density -log p(x|z) of the first draw (for
a Gaussian likelihood, the paper's squared error up to scale and a constant). MMD(q(z), p(z)) is
the unbiased MMD^2 between the batch's latent draws and as many draws from N(0, I)
(``vaereg_zoo.mmd``).

The paper's encoder is deterministic (z = f(x)), and so is the preset's: the model has no
posterior density and reports no NLL, and its samples come from the prior the MMD matched. The
objective takes the first draw of any encoder (a stochastic one works too: z ~ q(z|x)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torch import Tensor

from vaereg import Objective, Range
from vaereg.model import Terms
from vaereg.objectives import vector_mismatch
from vaereg.specs import LatentSpec
from vaereg_zoo.mmd import Kernel, mmd_to_standard_normal

PRESET = ("wae", "WAE-MMD (Tolstikhin et al. 2018): deterministic encoder, reconstruction cost plus lambda * "
          "MMD(q(z), N(0, I))", {})
PARTS = {"encoder": "deterministic"}


@dataclass
class WAEConfig:
    """``lambda_``: the MMD's weight (the paper's lambda = 10). ``kernel``: inverse multiquadric
    (the paper's choice) or rbf, with bandwidth 2 D (``vaereg_zoo.mmd``)."""

    lambda_: Annotated[float, Range(0, 1e6)] = 10.0
    kernel: Kernel = "imq"


class WAE(Objective):
    """The WAE-MMD loss on one draw per image."""

    Config = WAEConfig
    latent_kinds = frozenset({"continuous"})

    @classmethod
    def mismatch(cls, latent: LatentSpec, config: WAEConfig, closed_form_kl: bool) -> str | None:
        return vector_mismatch(latent, "compared with N(0, I) by MMD")

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        cost = -terms.log_px[0].mean()
        divergence = mmd_to_standard_normal(terms.z[0], self.config.kernel)
        loss = cost + self.config.lambda_ * divergence + terms.aux
        stats = {"loss": loss.detach(), "nll_x": cost.detach(), "mmd": divergence.detach()}
        stats.update({k: v.detach() for k, v in terms.stats.items()})
        return loss, stats
