"""Spectral regularisation (NVAE sec. 3.2; Miyato et al. 2018): the largest singular value of
each layer's weight, estimated by power iteration, summed into the loss to keep the encoder
and decoder smooth."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SpectralNorms(nn.Module):
    """One persistent left singular vector estimate ``u`` per conv / linear layer of ``model``
    (a weight ``[out, ...]`` is read as the matrix ``[out, in * kh * kw]``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        # a tuple keeps the layers out of this module's state: they belong to ``model``
        self.layers = tuple(m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))
        for i, layer in enumerate(self.layers):
            u = F.normalize(torch.randn(layer.weight.shape[0]), dim=0)
            self.register_buffer(f"u{i}", u)

    def estimate(self, iterations: int = 1) -> Tensor:
        """sigma_max per layer ``[layers]``, differentiable in the weights: ``iterations`` steps of
        v = W^T u / |W^T u|, u = W v / |W v| (without gradient), then sigma = u^T W v."""
        sigmas = []
        for i, layer in enumerate(self.layers):
            w = layer.weight.flatten(1)
            u = getattr(self, f"u{i}")
            with torch.no_grad():
                for _ in range(iterations):
                    v = F.normalize(w.t() @ u, dim=0)
                    u = F.normalize(w @ v, dim=0)
                getattr(self, f"u{i}").copy_(u)
            sigmas.append(u @ (w @ v))
        return torch.stack(sigmas)
