"""A plain autoencoder with an ex-post density for sampling (Ghosh et al. 2020, sec. 4, the "AE"
baseline):

    loss = -log p(x | z) + aux,   z = f(x)

The deterministic encoder is trained by reconstruction alone; the prior of its preset is a
Gaussian mixture fitted by EM to the trained encoder's latents (``gmm``), which is what samples,
and so FID, come from. Without a posterior density the model reports no NLL, and says why.
"""

from __future__ import annotations

from torch import Tensor

from vaereg import Objective
from vaereg.model import Terms

PRESET = ("ae", "Autoencoder (deterministic encoder, reconstruction only) with an ex-post GMM density for "
          "sampling (Ghosh et al. 2020)", {})
PARTS = {"encoder": "deterministic", "prior": "gmm"}


class Autoencoder(Objective):
    """The reconstruction term of the first draw (the only one a deterministic encoder has)."""

    latent_kinds = frozenset({"continuous"})

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        reconstruction = -terms.log_px[0].mean()
        loss = reconstruction + terms.aux
        stats = {"loss": loss.detach(), "nll_x": reconstruction.detach()}
        stats.update({k: v.detach() for k, v in terms.stats.items()})
        return loss, stats
