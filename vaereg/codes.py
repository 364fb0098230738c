"""Discrete codes: vector quantization with an EMA codebook (van den Oord et al. 2017,
appendix A.1; Razavi et al. 2019) or a codebook loss, restart of dead codes, and statistics
of code maps. Shared by every plugin with a discrete latent."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
