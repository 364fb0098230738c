"""InfoVAE with the MMD divergence (Zhao et al. 2019, eq. 6, with D = MMD):

    loss = -log p(x|z) + (1 - alpha) KL(q(z|x) || p(z)) + (alpha + lambda - 1) MMD(q(z), p(z)) + aux

MMD(q(z), p(z)) is the unbiased MMD^2 between the batch's posterior draws (one per image) and as
many draws from N(0, I) (``vaereg_zoo.mmd``). alpha = 0, lambda = 1 is the ELBO; alpha = 1 drops
the per-image KL for the MMD alone (the MMD-VAE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torch import Tensor

from vaereg import Objective, Range
from vaereg.model import Terms
from vaereg.objectives import kl_per_image, vector_mismatch
from vaereg.specs import LatentSpec
from vaereg_zoo.mmd import Kernel, mmd_to_standard_normal

PRESET = ("infovae", "InfoVAE (Zhao et al. 2019): the ELBO plus a weighted MMD between q(z) and N(0, I)", {})


@dataclass
class InfoVAEConfig:
    """``alpha``: how much of the per-image KL to drop (its weight is 1 - alpha). ``lambda_``: the
    paper's lambda, so the MMD weight is alpha + lambda - 1. The MMD^2 of a batch is O(1e-2) while
    -log p(x|z) is a sum over pixels (hundreds of nats on digits), so lambda must be large for the
    MMD to shape q(z) at all; 1000 brings the two to a comparable scale. ``kernel``: the MMD's
    kernel, rbf or inverse multiquadric (bandwidth 2 D, ``vaereg_zoo.mmd``)."""

    alpha: Annotated[float, Range(-1e6, 1)] = 0.0
    lambda_: Annotated[float, Range(0, 1e6, open_low=True)] = 1000.0
    kernel: Kernel = "rbf"

    def __post_init__(self) -> None:
        if self.alpha + self.lambda_ - 1 < 0:
            raise ValueError(f"the MMD weight alpha + lambda_ - 1 = {self.alpha + self.lambda_ - 1:g} is negative; "
                             "raise lambda_ or alpha")

    @property
    def mmd_weight(self) -> float:
        return self.alpha + self.lambda_ - 1


class InfoVAE(Objective):
    """The InfoVAE (MMD) loss on one draw per image."""

    Config = InfoVAEConfig
    latent_kinds = frozenset({"continuous"})

    @classmethod
    def mismatch(cls, latent: LatentSpec, config: InfoVAEConfig, closed_form_kl: bool) -> str | None:
        return vector_mismatch(latent, "compared with N(0, I) by MMD")

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        config = self.config
        log_px = terms.log_px[0]
        kl = kl_per_image(terms)
        divergence = mmd_to_standard_normal(terms.z[0], config.kernel)
        loss = (-log_px + (1 - config.alpha) * kl).mean() + config.mmd_weight * divergence + terms.aux
        stats = {"loss": loss.detach(), "nll_x": -log_px.mean().detach(), "kl": kl.mean().detach(),
                 "mmd": divergence.detach(), "nelbo": (kl - log_px).mean().detach()}
        stats.update({k: v.detach() for k, v in terms.stats.items()})
        return loss, stats
