"""Assemble a resolved combo into one module, and draw latents through it."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor, nn

from vaereg.combo import Combo
from vaereg.parts import Posterior


class Draw:
    """k latent draws per image and the terms of log w = log p(x|z) + log p(z) - log q(z|x),
    each ``[k, B]``; terms are computed on first use."""

    def __init__(self, model: VAE, x: Tensor, posterior: Posterior, k: int):
        self.model, self.x, self.posterior, self.k = model, x, posterior, k
        self.z = posterior.rsample(k)

    @property
    def shape(self) -> tuple[int, int]:
        return self.k, self.x.shape[0]

    @cached_property
    def log_px(self) -> Tensor:
        params = self.model.decoder(self.posterior.decoder_input(self.z))
        x = self.x.expand(self.k, *self.x.shape).flatten(0, 1)
        return self.model.likelihood.log_prob(x, params).view(self.shape)

    @cached_property
    def log_pz(self) -> Tensor:
        known = self.posterior.log_prior(self.z)
        if known is not None:
            return known
        return self.model.prior.log_prob(self.z.flatten(0, 1)).view(self.shape)

    @cached_property
    def log_qz(self) -> Tensor:
        if self.posterior.deterministic:
            return torch.zeros(self.shape, device=self.x.device)
        return self.posterior.log_prob(self.z)

    @cached_property
    def kl(self) -> Tensor | None:
        """Closed-form KL per latent dimension ``[B, *shape]`` when the prior has one."""
        return self.model.prior.kl(self.posterior)

    def log_weights(self) -> Tensor:
        return self.log_px + self.log_pz - self.log_qz


class VAE(nn.Module):
    """Encoder, decoder, prior and likelihood of one combo, built from their configs. A slot
    filled by a coupled encoder is that encoder's attribute (``model.prior`` is
    ``model.encoder.prior``), so its weights are stored once."""

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
            self.prior = parts["prior"].cls(data, latent, cfg["prior"])

    def __getattr__(self, name: str):
        coupled = self.__dict__.get("combo")
        if coupled is not None and name in coupled.coupled:
            return getattr(self.encoder, coupled.coupled[name])
        return super().__getattr__(name)

    def draw(self, x: Tensor, k: int = 1, posterior: Posterior | None = None) -> Draw:
        return Draw(self, x, posterior if posterior is not None else self.encoder(x), k)

    def stage_parameters(self, stage: int) -> list[nn.Parameter]:
        """Stage 1 trains everything but a stage-2 prior; stage 2 trains only that prior."""
        if self.prior.stage == 1:
            return list(self.parameters())
        if stage == 2:
            return list(self.prior.parameters())
        return [p for name, p in self.named_parameters() if not name.startswith("prior.")]

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        z = self.prior.sample(n)
        return self.likelihood.sample(self.decoder(self.encoder.embed(z)))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        draw = self.draw(x)
        return self.likelihood.sample(self.decoder(draw.posterior.decoder_input(draw.z)))
