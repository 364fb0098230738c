"""A masked autoregressive flow prior (Papamakarios et al. 2017) over a latent vector with a
N(0, I) base. Each step maps z to u_i = (z_i - m_i(z_<i)) exp(-a_i(z_<i)), so log p(z) is one
parallel pass: log N(u) - sum a. Sampling inverts each step one dimension at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import Tensor, nn

from vaereg import Context, DataSpec, LatentSpec, Prior, Range
from vaereg.gaussian import HALF_LOG_2PI
from vaereg.parts import ForVector
from vaereg_flows.made import alternating, invert

SCALE = 3.0  # |a| < SCALE per step, a = SCALE tanh(raw / SCALE): a soft bound that keeps steps invertible


def bounded(raw: Tensor) -> Tensor:
    return SCALE * torch.tanh(raw / SCALE)


@dataclass
class FlowConfig:
    """``fit``: ``joint`` trains the flow with the autoencoder; ``posthoc`` trains the
    autoencoder against N(0, I), then the flow on the frozen encoder's latents."""

    steps: Annotated[int, Range(1, 64)] = 4
    hidden: Annotated[int, Range(2, 4096)] = 64
    fit: Literal["joint", "posthoc"] = "joint"


class MAF(nn.Module):
    """``steps`` MADE-conditioned affine steps over ``dim`` dimensions, alternating order."""

    def __init__(self, dim: int, steps: int, hidden: int, context_dim: int = 0):
        super().__init__()
        self.steps = alternating(dim, steps, hidden, context_dim)

    def to_base(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``u`` and log |det du/dz| per row."""
        log_det = z.new_zeros(z.shape[0])
        for step in self.steps:
            shift, raw = step(z, context)
            a = bounded(raw)
            z = (z - shift) * torch.exp(-a)
            log_det = log_det - a.sum(1)
        return z, log_det

    def from_base(self, u: Tensor, context: Tensor | None = None) -> Tensor:
        """The inverse of ``to_base``."""
        return invert(self.steps, u, context, unshift)


def unshift(u: Tensor, shift: Tensor, raw: Tensor) -> Tensor:
    """The input of one step u = (z - shift) exp(-a), from its output."""
    return u * torch.exp(bounded(raw)) + shift


class FlowPrior(ForVector, Prior):
    """p(z | y) through a MAF to N(0, I); under ``--condition label`` every conditioner also
    sees a learned class embedding."""

    Config = FlowConfig

    @classmethod
    def schedule_for(cls, config: FlowConfig):
        return "joint" if config.fit == "joint" else "gradient"

    def __init__(self, data: DataSpec, latent: LatentSpec, config: FlowConfig):
        super().__init__(data, latent, config)
        self.label = nn.Embedding(data.classes, config.hidden) if data.classes else None
        self.flow = MAF(latent.size, config.steps, config.hidden, config.hidden if data.classes else 0)
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    def _context(self, context: Context) -> Tensor | None:
        return self.label(context.label) if self.label is not None else None

    def log_prob(self, z: Tensor, context: Context) -> Tensor:
        u, log_det = self.flow.to_base(z, self._context(context))
        return (-0.5 * u.square() - HALF_LOG_2PI).sum(1) + log_det

    def sample(self, n: int, context: Context) -> Tensor:
        u = torch.randn(n, self.flow.steps[0].dim, device=self.anchor.device)
        return self.flow.from_base(u, self._context(context))
