"""Discrete codes: vector quantization with an EMA codebook (van den Oord et al. 2017,
appendix A.1; Razavi et al. 2019) or a codebook loss, restart of dead codes, the point-mass
posterior of quantized codes, and statistics of code maps. Shared by every plugin with a
discrete latent."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaereg.parts import Posterior
from vaereg.specs import LatentSpec


def codebook_stats(codes: Tensor, k: int) -> dict[str, Tensor]:
    """Perplexity exp(H(p)) of the histogram of ``codes`` over ``k`` codes, and the fraction
    of the ``k`` codes in use."""
    p = torch.bincount(codes.flatten(), minlength=k).float()
    p = p / p.sum()
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return {"perplexity": entropy.exp(), "usage": (p > 0).float().mean()}

class Quantizer(nn.Module):
    """Nearest-code assignment of ``[N, D, h, w]`` vectors to ``codes`` codebook entries.

    With ``ema`` the codebook is a buffer updated in training as
    ``n_k <- g n_k + (1 - g) c_k``, ``m_k <- g m_k + (1 - g) sum_{z -> k} z``,
    ``e_k = m_k / n~_k`` with Laplace-smoothed counts ``n~_k = (n_k + eps) / (n + K eps) * n``.
    A code whose EMA count falls below ``restart_below`` is moved onto a random vector of the
    current batch. Without ``ema`` the codebook is a parameter trained by the codebook loss."""

    def __init__(self, codes: int, dim: int, *, ema: bool, decay: float, epsilon: float, restart_below: float):
        super().__init__()
        self.codes, self.dim, self.ema = codes, dim, ema
        self.decay, self.epsilon, self.restart_below = decay, epsilon, restart_below
        init = torch.randn(codes, dim) / dim**0.5
        if ema:
            self.register_buffer("codebook", init.clone())
            self.register_buffer("counts", torch.ones(codes))
            self.register_buffer("sums", init.clone())
        else:
            self.codebook = nn.Parameter(init)

    def assign(self, flat: Tensor) -> Tensor:
        """Index of the nearest code for each row of ``flat`` ``[M, D]``."""
        book = self.codebook.to(flat.dtype)
        distances = flat.square().sum(1, keepdim=True) - 2 * flat @ book.T + book.square().sum(1)
        return distances.argmin(1)

    def lookup(self, codes: Tensor) -> Tensor:
        """``[N, h, w]`` code indices -> ``[N, D, h, w]`` vectors."""
        return F.embedding(codes, self.codebook).movedim(-1, 1)

    def quantize(self, z_e: Tensor, *, update: bool) -> tuple[Tensor, Tensor]:
        """Nearest codes ``[N, h, w]`` of vectors ``[N, D, h, w]`` and the code vectors this step
        quantized with; with ``update`` (training) an EMA step of the codebook follows."""
        flat = z_e.movedim(1, -1).reshape(-1, self.dim).detach()
        codes = self.assign(flat)
        code_map = codes.view(z_e.shape[0], *z_e.shape[2:])
        e = self.lookup(code_map)
        if update and self.ema:
            self.update(flat, codes)
        return code_map, e

    @torch.no_grad()
    def update(self, flat: Tensor, codes: Tensor) -> None:
        """One EMA step of the codebook from the vectors ``flat`` assigned to ``codes``."""
        flat = flat.float()
        onehot = F.one_hot(codes, self.codes).float()
        self.counts.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.sums.mul_(self.decay).add_(onehot.T @ flat, alpha=1 - self.decay)
        total = self.counts.sum()
        smoothed = (self.counts + self.epsilon) / (total + self.codes * self.epsilon) * total
        self.codebook.copy_(self.sums / smoothed.unsqueeze(1))
        self.restart(flat)

    @torch.no_grad()
    def restart(self, flat: Tensor) -> None:
        dead = (self.counts < self.restart_below).nonzero().flatten()
        if dead.numel() == 0:
            return
        picks = flat[torch.randint(flat.shape[0], (dead.numel(),), device=flat.device)]
        self.codebook[dead] = picks
        self.sums[dead] = picks
        self.counts[dead] = 1.0


class QuantizedPosterior(Posterior):
    """A point mass at the nearest codes of each code map of ``latent`` (one map, or every
    level of a hierarchy). The decoder receives the code vectors with the straight-through
    gradient z_e + sg(e - z_e); the encoder's loss is the commitment term (plus the codebook
    term when the codebook is not an EMA)."""

    deterministic = True

    def __init__(self, latent: LatentSpec, z_e: list[Tensor], codes: list[Tensor], e: list[Tensor], *,
                 commitment: float, codebook_loss: bool):
        self.latent, self.z_e, self.e, self.level_codes = latent, z_e, e, codes
        self.commitment, self.codebook_loss = commitment, codebook_loss
        self.codes = latent.join(codes)

    def rsample(self, k: int) -> Tensor:
        return self.codes.expand(k, *self.codes.shape)

    def log_prob(self, z: Tensor) -> Tensor:
        return torch.zeros(z.shape[:2], device=z.device)

    def decoder_input(self, z: Tensor) -> Tensor:
        """``z`` is this posterior's own codes (drawn by ``rsample``)."""
        st = self.latent.join([z_e + (e - z_e).detach() for z_e, e in zip(self.z_e, self.e, strict=True)])
        return st.expand(z.shape[0], *st.shape).flatten(0, 1)

    def aux_loss(self) -> Tensor:
        loss = 0
        for z_e, e in zip(self.z_e, self.e, strict=True):
            loss = loss + self.commitment * (z_e - e.detach()).square().flatten(1).sum(1)
            if self.codebook_loss:
                loss = loss + (z_e.detach() - e).square().flatten(1).sum(1)
        return loss.mean()

    def stats(self) -> dict[str, Tensor]:
        """Codebook perplexity and usage; per level (``_z1``, ``_z2``, ...) for a hierarchy."""
        levels = self.latent.as_levels()
        per_level = [codebook_stats(c, level.codes) for c, level in zip(self.level_codes, levels, strict=True)]
        if len(per_level) == 1:
            return per_level[0]
        return {f"{key}_z{i + 1}": value for i, stats in enumerate(per_level) for key, value in stats.items()}
