"""Statistics of discrete code maps."""

from __future__ import annotations

import torch
from torch import Tensor


def codebook_stats(codes: Tensor, k: int) -> dict[str, Tensor]:
    """Perplexity exp(H(p)) of the histogram of ``codes`` over ``k`` codes, and the fraction
    of the ``k`` codes in use."""
    p = torch.bincount(codes.flatten(), minlength=k).float()
    p = p / p.sum()
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return {"perplexity": entropy.exp(), "usage": (p > 0).float().mean()}
