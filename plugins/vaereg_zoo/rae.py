"""Regularised autoencoders (Ghosh et al. 2020, "From Variational to Deterministic Autoencoders",
eq. 11):

    loss = -log p(x | z) + beta * 1/2 ||z||^2 + lambda * L_REG + aux,   z = f(x)

with the decoder regulariser L_REG chosen by ``regulariser``:

- ``l2`` (RAE-L2): ||theta||^2 over the decoder's parameters (weight decay on the decoder);
- ``gp`` (RAE-GP): ||J||_F^2, the squared Frobenius norm of the Jacobian of the decoder's mean
  image with respect to z, estimated without bias as ||J^T v||^2 with v ~ N(0, I) (one
  vector-Jacobian product per batch: E ||J^T v||^2 = tr(J J^T)).

The reconstruction is the likelihood's -log p(x|z) (the paper's squared error for a Gaussian).
The preset's prior is a 10-component Gaussian mixture fitted by EM to the trained encoder's
latents, the paper's ex-post density estimation (sec. 4), which samples and FID come from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import Tensor

from vaereg import Objective, Range
from vaereg.model import Terms

PRESET = ("rae", "Regularised autoencoder, RAE-L2 or RAE-GP (Ghosh et al. 2020), with an ex-post GMM density "
          "for sampling", {})
PARTS = {"encoder": "deterministic", "prior": "gmm"}


@dataclass
class RAEConfig:
    """``beta``: weight of 1/2 ||z||^2; ``lambda_``: weight of the decoder regulariser
    ``regulariser`` (``l2``: RAE-L2, ``gp``: RAE-GP). The defaults are the paper's small weights
    for its image experiments."""

    beta: Annotated[float, Range(0, 1e6)] = 1e-4
    lambda_: Annotated[float, Range(0, 1e6)] = 1e-7
    regulariser: Literal["l2", "gp"] = "l2"


def jacobian_projection(f: Callable[[Tensor], Tensor], z: Tensor, v: Tensor | None = None) -> Tensor:
    """||J_f(z)^T v||^2 per row of ``z`` ``[B, D]`` for one direction ``v`` ``[B, *f(z).shape[1:]]``
    (None: v ~ N(0, I)), differentiable (one vector-Jacobian product). Summed over an orthonormal
    basis of v it is ||J||_F^2; for v ~ N(0, I) it is an unbiased estimate of it."""
    with torch.enable_grad():  # also when the loss is only being looked at
        z = z if z.requires_grad else z.detach().requires_grad_(True)
        out = f(z)
        (grad,) = torch.autograd.grad(out, z, torch.randn_like(out) if v is None else v, create_graph=True)
    return grad.flatten(1).square().sum(1)


class RAE(Objective):
    """Reconstruction, the latent's energy and a regulariser of the model's decoder."""

    Config = RAEConfig
    latent_kinds = frozenset({"continuous"})

    def decoded_mean(self, terms: Terms) -> Callable[[Tensor], Tensor]:
        """z ``[B, D]`` -> the decoder's mean image (its raw output where the likelihood has none)."""
        model = terms.model
        context = terms.batch.context

        def mean(z: Tensor) -> Tensor:
            params = model.decoder(model.encoder.embed(z, context), context)
            image = model.likelihood.mean(params, context)
            return params if image is None else image
        return mean

    def regulariser(self, terms: Terms) -> Tensor:
        if self.config.regulariser == "l2":
            return sum(p.square().sum() for p in terms.model.decoder.parameters())
        return jacobian_projection(self.decoded_mean(terms), terms.z[0]).mean()

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        config = self.config
        reconstruction = -terms.log_px[0].mean()
        energy = 0.5 * terms.z[0].flatten(1).square().sum(1).mean()
        regulariser = self.regulariser(terms)
        loss = reconstruction + config.beta * energy + config.lambda_ * regulariser + terms.aux
        stats = {"loss": loss.detach(), "nll_x": reconstruction.detach(), "z_energy": energy.detach(),
                 f"{config.regulariser}_penalty": regulariser.detach()}
        stats.update({k: v.detach() for k, v in terms.stats.items()})
        return loss, stats
