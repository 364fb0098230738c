"""The partially importance-weighted autoencoder (Rainforth et al. 2018, "Tighter variational
bounds are not necessarily better", sec. 4): on the same M*K draws per image, the inference
network ascends the MIWAE(M, K) bound and the generative network the IWAE(M*K) bound,

    encoder:  -(1/M) sum_m (logsumexp_k log w_{m,k} - log K) + aux
    decoder:  -(logsumexp_{m,k} log w_{m,k} - log MK) + aux

with log w = log p(x|z) + log p(z) - log q(z|x) (``vaereg.objectives.iw_bound``), each with its
own optimiser: the decoder gains from the tighter bound, the encoder from MIWAE's better gradient
signal-to-noise ratio. M = 1 is IWAE. The defaults are the paper's MNIST comparison at M*K = 64
draws (sec. 5, PIWAE(8, 8)).
"""

from __future__ import annotations

from torch import Tensor, nn

from vaereg import Objective
from vaereg.model import VAE, Terms
from vaereg.objectives import Step, iw_bound
from vaereg_zoo.miwae import MIWAEConfig, bound_loss

PRESET = ("piwae", "PIWAE (Rainforth et al. 2018): the encoder trains on the MIWAE(M, K) bound and the decoder "
          "on the IWAE(M*K) bound, with two optimisers", {})


def inference_parameters(model: VAE) -> set[int]:
    """Ids of the encoder's own parameters: those of ``model.encoder`` that are not also its
    decoder's or prior's (an encoder that fills those slots itself shares modules with them)."""
    generative = {id(p) for part in (model.decoder, model.prior) for p in part.parameters()}
    return {id(p) for p in model.encoder.parameters() if id(p) not in generative}


class PIWAE(Objective):
    """IWAE(M*K) for the decoder (and likelihood and jointly fitted prior), MIWAE(M, K) for the
    encoder, on M*K draws per image. ``loss`` is the decoder's."""

    Config = MIWAEConfig

    @property
    def draws(self) -> int:
        return self.config.draws

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        return bound_loss(terms, iw_bound(terms.log_weights()), "iwae_bound")

    def encoder_loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        return bound_loss(terms, iw_bound(terms.log_weights(), self.config.iw_m), "miwae_bound")

    def steps(self, model: VAE, trained: list[nn.Parameter]) -> list[Step]:
        """Two optimisers: ``decoder`` over every trained parameter but the encoder's own,
        minimising ``loss``; ``encoder`` over the encoder's, minimising ``encoder_loss``."""
        inference = inference_parameters(model)
        return [Step("decoder", [p for p in trained if id(p) not in inference], self.loss),
                Step("encoder", [p for p in trained if id(p) in inference], self.encoder_loss)]
