"""One module for one combo: ``VAE.forward(batch, k)`` returns the per-image terms of k draws.

Everything DDP, ``torch.compile`` and autocast must see runs inside ``forward``; the training
loss, the negative ELBO and the importance-sampled NLL are reductions of its ``Terms``
(``vaereg.objectives``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from vaereg.config import from_dict
from vaereg.context import Context
from vaereg.parts import Posterior, Prior

if TYPE_CHECKING:
    from vaereg.combo import Combo


@dataclass
class Batch:
    """B images ``[B, C, H, W]`` in [0, 1] and what they are conditioned on."""

    x: Tensor
    context: Context = field(default_factory=Context)


@dataclass
class Terms:
    """The terms of log w = log p(x|z) + log p(z) - log q(z|x) for k draws per image."""

    z: Tensor  # [k, B, *latent.shape]
    log_px: Tensor  # [k, B]
    log_pz: Tensor  # [k, B]
    log_qz: Tensor  # [k, B]; 0 for a deterministic posterior
    kl: Tensor | None  # [B, *latent.shape]: closed-form KL per dimension, when the pair has one
    aux: Tensor  # training-only loss of the encoder (commitment, spectral regularisation)
    deterministic: bool  # a point-mass posterior: the NLL is a bound and one draw suffices
    stats: dict[str, Tensor]  # the posterior's diagnostics (codebook perplexity)
    posterior: Posterior  # q(z|x) of the batch: its parameters, and log q of any z under each image's posterior
    batch: Batch  # what was encoded
    model: VAE | None = None  # what computed them: an objective that decodes again (a penalty on the decoder)

    def log_weights(self) -> Tensor:
        return self.log_px + self.log_pz - self.log_qz


class VAE(nn.Module):
    """Encoder, decoder, prior and likelihood of one combo, built from their configs. A slot
    filled by a coupled encoder is that encoder's attribute (``model.prior`` is
    ``model.encoder.prior``), so its weights are stored once.

    A prior fitted after the autoencoder is not used until it is fitted (``prior_trained``,
    kept in the state dict): until then its stand-in scores and samples latents."""

    def __init__(self, combo: Combo):
        super().__init__()
        self.combo = combo
        data, latent, cfg = combo.data, combo.latent, combo.configs
        parts = combo.parts
        self.likelihood = parts["likelihood"].cls(data, latent, cfg["likelihood"])
        out_channels = self.likelihood.param_channels()
        if combo.coupled:
            self.encoder = parts["encoder"].cls(data, latent, cfg["encoder"], out_channels=out_channels)
        else:
            self.encoder = parts["encoder"].cls(data, latent, cfg["encoder"])
        if "decoder" not in combo.coupled:
            self.decoder = parts["decoder"].cls(data, latent, cfg["decoder"], out_channels=out_channels)
        if "prior" not in combo.coupled:
            # a prior fitted after the autoencoder must not change how the autoencoder trains:
            # its initialisation leaves the random stream as it found it
            with torch.random.fork_rng(devices=[], enabled=combo.schedule != "joint"):
                self.prior = parts["prior"].cls(data, latent, cfg["prior"])
        self.prior.attach(self.encoder)
        self.stand_in: Prior | None = None
        if combo.schedule != "joint":
            cls = combo.stand_in
            self.stand_in = cls(data, latent, from_dict(cls.Config, {}, what="stand-in prior"))
        self.prior_trained = self.stand_in is None

    def __getattr__(self, name: str):
        coupled = self.__dict__.get("combo")
        if coupled is not None and name in coupled.coupled:
            return getattr(self.encoder, coupled.coupled[name])
        return super().__getattr__(name)

    def get_extra_state(self) -> dict[str, bool]:
        return {"prior_trained": self.prior_trained}

    def set_extra_state(self, state: dict[str, bool]) -> None:
        self.prior_trained = bool(state.get("prior_trained", state.get("prior_fitted")))  # API-2 checkpoints

    @property
    def active_prior(self) -> Prior:
        """The prior the model scores and samples with now: the stand-in until the prior is fitted."""
        return self.prior if self.prior_trained else self.stand_in

    def encode(self, batch: Batch) -> Posterior:
        return self.encoder(batch.x, batch.context)

    def terms(self, batch: Batch, posterior: Posterior, k: int) -> Terms:
        """The terms of ``k`` draws from ``posterior`` (already encoded from ``batch``)."""
        prior = self.active_prior
        prior.prepare()
        b = batch.x.shape[0]
        z = posterior.rsample(k)
        context = batch.context.repeat(k)
        params = self.decoder(posterior.decoder_input(z), context)
        x = batch.x.expand(k, *batch.x.shape).flatten(0, 1)
        log_px = self.likelihood.log_prob(x, params, context).view(k, b)
        known = posterior.log_prior(z)
        log_pz = known if known is not None else prior.log_prob(z.flatten(0, 1), context).view(k, b)
        log_qz = torch.zeros_like(log_px) if posterior.deterministic else posterior.log_prob(z)
        aux = posterior.aux_loss() + posterior.correction(log_px)
        return Terms(z, log_px, log_pz, log_qz, self.combo.kl(posterior, prior), aux,
                     posterior.deterministic, posterior.stats(), posterior, batch, self)

    def forward(self, batch: Batch, k: int = 1, posterior: Posterior | None = None) -> Terms:
        """Encode ``batch`` (unless its ``posterior`` is given: evaluation encodes once and
        draws in chunks) and return the terms of ``k`` draws per image."""
        return self.terms(batch, self.encode(batch) if posterior is None else posterior, k)

    def stage_parameters(self, prior: bool) -> list[nn.Parameter]:
        """What a stage optimises: a prior fitted after the autoencoder (``prior=True``), or
        everything else, a jointly fitted (or coupled) prior included."""
        own = {id(p) for p in self.prior.parameters()} if self.combo.schedule != "joint" else set()
        return [p for p in self.parameters() if (id(p) in own) == prior]

    @torch.no_grad()
    def sample(self, n: int, context: Context | None = None, *, mean: bool = False) -> Tensor:
        """``n`` images from the prior: pixels sampled from the likelihood, or with ``mean`` the
        likelihood's mean image where it has one (else the sampled pixels)."""
        context = context or Context()
        prior = self.active_prior
        prior.prepare()
        z = prior.sample(n, context)
        params = self.decoder(self.encoder.embed(z, context), context)
        means = self.likelihood.mean(params, context) if mean else None
        return means if means is not None else self.likelihood.sample(params, context)

    @torch.no_grad()
    def reconstruct(self, batch: Batch) -> Tensor:
        posterior = self.encode(batch)
        z = posterior.rsample(1)
        params = self.decoder(posterior.decoder_input(z), batch.context)
        return self.likelihood.sample(params, batch.context)
