"""Discrete codes: vector quantization with an EMA codebook (van den Oord et al. 2017,
appendix A.1; Razavi et al. 2019) or a codebook loss, restart of dead codes, the point-mass
posterior of quantized codes, the codebook options every vector-quantizing encoder shares, the
uniform prior over codes, and statistics of code maps. Shared by every plugin with a discrete latent.

A code map is a tensor of codebook *indices*; ``codes`` is always a count (codebook size)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaereg import collective
from vaereg.config import Range
from vaereg.context import Context
from vaereg.parts import ForCodes, Posterior, Prior
from vaereg.specs import DataSpec, LatentSpec


def codebook_stats(indices: Tensor, k: int) -> dict[str, Tensor]:
    """Perplexity exp(H(p)) of the histogram of ``indices`` over ``k`` codes, and the fraction
    of the ``k`` codes in use."""
    p = torch.bincount(indices.flatten(), minlength=k).float()
    p = p / p.sum()
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return {"perplexity": entropy.exp(), "usage": (p > 0).float().mean()}


class Quantizer(nn.Module):
    """Nearest-code assignment of ``[N, D, h, w]`` vectors to a codebook of ``size`` entries.

    With ``ema`` the codebook is a buffer updated in training as
    ``n_k <- g n_k + (1 - g) c_k``, ``m_k <- g m_k + (1 - g) sum_{z -> k} z``,
    ``e_k = m_k / n~_k`` with Laplace-smoothed counts ``n~_k = (n_k + eps) / (n + K eps) * n``.
    A code whose EMA count falls below ``restart_below`` is moved onto a random vector of the
    current batch. Without ``ema`` the codebook is a parameter trained by the codebook loss.

    Under torchrun the batch is the global batch: the counts and sums are all-reduced right
    before the update, and restarts are drawn on rank 0 from every rank's vectors and broadcast,
    so every rank holds the codebook one process would over the same global batch."""

    def __init__(self, size: int, dim: int, *, ema: bool, decay: float, epsilon: float, restart_below: float):
        super().__init__()
        self.size, self.dim, self.ema = size, dim, ema
        self.decay, self.epsilon, self.restart_below = decay, epsilon, restart_below
        init = torch.randn(size, dim) / dim**0.5
        if ema:
            self.register_buffer("codebook", init.clone())
            self.register_buffer("counts", torch.ones(size))
            self.register_buffer("sums", init.clone())
        else:
            self.codebook = nn.Parameter(init)

    def assign(self, flat: Tensor) -> Tensor:
        """Index of the nearest code for each row of ``flat`` ``[M, D]``."""
        book = self.codebook.to(flat.dtype)
        distances = flat.square().sum(1, keepdim=True) - 2 * flat @ book.T + book.square().sum(1)
        return distances.argmin(1)

    def lookup(self, indices: Tensor) -> Tensor:
        """``[N, h, w]`` code indices -> ``[N, D, h, w]`` vectors."""
        return F.embedding(indices, self.codebook).movedim(-1, 1)

    def quantize(self, z_e: Tensor, *, update: bool) -> tuple[Tensor, Tensor]:
        """Nearest code indices ``[N, h, w]`` of vectors ``[N, D, h, w]`` and the code vectors
        this step quantized with; with ``update`` (training) an EMA step of the codebook follows."""
        flat = z_e.movedim(1, -1).reshape(-1, self.dim).detach()
        nearest = self.assign(flat)
        index_map = nearest.view(z_e.shape[0], *z_e.shape[2:])
        e = self.lookup(index_map)
        if update and self.ema:
            self.update(flat, nearest)
        return index_map, e

    @torch.no_grad()
    def update(self, flat: Tensor, indices: Tensor) -> None:
        """One EMA step of the codebook from the vectors ``flat`` assigned to ``indices``."""
        flat = flat.float()
        onehot = F.one_hot(indices, self.size).float()
        batch = collective.all_sum(torch.cat([onehot.sum(0, keepdim=True).T, onehot.T @ flat], 1))
        self.counts.mul_(self.decay).add_(batch[:, 0], alpha=1 - self.decay)
        self.sums.mul_(self.decay).add_(batch[:, 1:], alpha=1 - self.decay)
        total = self.counts.sum()
        smoothed = (self.counts + self.epsilon) / (total + self.size * self.epsilon) * total
        self.codebook.copy_(self.sums / smoothed.unsqueeze(1))
        self.restart(flat)

    @torch.no_grad()
    def restart(self, flat: Tensor) -> None:
        dead = (self.counts < self.restart_below).nonzero().flatten()
        if dead.numel() == 0:  # the counts are global: every rank takes the same branch
            return
        flat = collective.gather_rows(flat)
        picks = collective.broadcast(flat[torch.randint(flat.shape[0], (dead.numel(),), device=flat.device)])
        self.codebook[dead] = picks
        self.sums[dead] = picks
        self.counts[dead] = 1.0


class QuantizedPosterior(Posterior):
    """A point mass at the nearest codes of each code map of ``latent`` (one map, or every
    level of a hierarchy). The decoder receives the code vectors with the straight-through
    gradient z_e + sg(e - z_e); the encoder's loss is the commitment term (plus the codebook
    term when the codebook is not an EMA)."""

    deterministic = True

    def __init__(self, latent: LatentSpec, z_e: list[Tensor], indices: list[Tensor], e: list[Tensor], *,
                 commitment: float, codebook_loss: bool):
        self.latent, self.z_e, self.e, self.level_indices = latent, z_e, e, indices
        self.commitment, self.codebook_loss = commitment, codebook_loss
        self.indices = latent.join(indices)

    def rsample(self, k: int) -> Tensor:
        return self.indices.expand(k, *self.indices.shape)

    def log_prob(self, z: Tensor) -> Tensor:
        return torch.zeros(z.shape[:2], device=z.device)

    def mode(self) -> Tensor:
        return self.indices

    def decoder_input(self, z: Tensor) -> Tensor:
        """``z`` is this posterior's own indices (drawn by ``rsample``)."""
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
        per_level = [codebook_stats(i, level.codes) for i, level in zip(self.level_indices, levels, strict=True)]
        if len(per_level) == 1:
            return per_level[0]
        return {f"{key}_z{i + 1}": value for i, stats in enumerate(per_level) for key, value in stats.items()}


@dataclass
class CodebookConfig:
    """The codebook options of a vector-quantizing encoder, for each of its code maps: ``codes``
    codes of ``embed_dim`` each; ``commitment``: weight of the commitment term; ``ema``: an EMA
    codebook (``decay``, Laplace ``epsilon``), else one trained by the codebook loss;
    ``restart_below``: EMA count under which a code is restarted. An encoder's ``Config``
    extends it with its own options."""

    codes: Annotated[int, Range(2, 65536)] = 32
    embed_dim: Annotated[int, Range(1, 1024)] = 16
    commitment: Annotated[float, Range(0, 1e3)] = 0.25
    ema: bool = True
    decay: Annotated[float, Range(0, 1)] = 0.99
    epsilon: Annotated[float, Range(0, 1, open_low=True)] = 1e-5
    restart_below: Annotated[float, Range(0, 1e6)] = 0.01

    def quantizer(self) -> Quantizer:
        """A new codebook with these options."""
        return Quantizer(self.codes, self.embed_dim, ema=self.ema, decay=self.decay, epsilon=self.epsilon,
                         restart_below=self.restart_below)

    def posterior(self, latent: LatentSpec, z_e: list[Tensor], indices: list[Tensor],
                  e: list[Tensor]) -> QuantizedPosterior:
        """The point mass at the quantized codes of each map (as ``QuantizedPosterior``)."""
        return QuantizedPosterior(latent, z_e, indices, e, commitment=self.commitment, codebook_loss=not self.ema)


class UniformCodes(ForCodes, Prior):
    """p(z) = prod over levels of K^-N, for a code map (or each map of a hierarchy) of N
    positions with K codes each. The stage-1 stand-in for priors over codes."""

    def __init__(self, data: DataSpec, latent: LatentSpec, config: object):
        super().__init__(data, latent, config)
        self.latent = latent
        self.log_p = -sum(level.size * math.log(level.codes) for level in latent.as_levels())
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    def log_prob(self, z: Tensor, context: Context) -> Tensor:
        return torch.full((z.shape[0],), self.log_p, device=z.device)

    def sample(self, n: int, context: Context) -> Tensor:
        return self.latent.join([torch.randint(level.codes, (n, *level.shape), device=self.anchor.device)
                                 for level in self.latent.as_levels()])
