"""What a batch carries besides its images, and how parts condition on it.

Today the context is a class label (a conditional VAE, Sohn et al. 2015); a new kind of
conditioning adds a field to ``Context`` and a spec field to ``DataSpec``. A part that ignores
the context loses nothing; one that uses it builds ``context_bias(data, dim)`` and adds it to
a hidden layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from vaereg.errors import UsageError
from vaereg.specs import DataSpec


@dataclass(frozen=True)
class Context:
    """Per-image conditioning for a batch of B images; each field is ``[B, ...]`` or None."""

    label: Tensor | None = None

    def repeat(self, k: int) -> Context:
        """Each image's context for ``k`` draws, draw-major like ``z.flatten(0, 1)``: ``[k * B, ...]``."""
        return Context(label=None if self.label is None else self.label.repeat(k))

    def to(self, device) -> Context:
        return Context(label=None if self.label is None else self.label.to(device))

    def select(self, index) -> Context:
        """The context of the images ``index`` picks."""
        return Context(label=None if self.label is None else self.label[index])


class LabelBias(nn.Module):
    """A learned vector per class, added to a hidden layer ``[N, dim, ...]`` (broadcast over
    any trailing spatial dimensions)."""

    def __init__(self, classes: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(classes, dim)

    def forward(self, h: Tensor, context: Context) -> Tensor:
        if context.label is None:
            raise UsageError("this model is conditioned on a class label, but the batch has none; give --label")
        e = self.embedding(context.label)
        return h + e.view(*e.shape, *(1,) * (h.dim() - 2))


class Unconditioned(nn.Module):
    """Stands where a ``LabelBias`` would be in an unconditional model: adds nothing."""

    def forward(self, h: Tensor, context: Context) -> Tensor:
        return h


def context_bias(data: DataSpec, dim: int) -> nn.Module:
    """``h -> h + embedding(label)`` for a conditional model, the identity otherwise."""
    return LabelBias(data.classes, dim) if data.classes else Unconditioned()
