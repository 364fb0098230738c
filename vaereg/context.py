"""What a batch carries besides its images, and how parts condition on it.

Today the context is a class label (a conditional VAE, Sohn et al. 2015); a new kind of
conditioning adds a field to ``Context`` and a spec field to ``DataSpec``. A part that ignores
the context loses nothing; one that uses it builds ``context_bias(data, *shape)`` and adds it to
a hidden layer.
"""

from __future__ import annotations

import math
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
    """A learned bias per class, added to a hidden layer ``[N, *shape, ...]``: ``shape`` is
    ``(dim,)`` for a per-channel bias (broadcast over trailing spatial dimensions), or a whole
    map ``(channels, h, w)``. With the bias on the first layer of a vector input this is the
    classic one-hot concatenation."""

    def __init__(self, classes: int, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape
        self.embedding = nn.Embedding(classes, math.prod(shape))

    def forward(self, h: Tensor, context: Context) -> Tensor:
        if context.label is None:
            raise UsageError("this model is conditioned on a class label, but the batch has none; give --label")
        e = self.embedding(context.label).view(-1, *self.shape)
        return h + e.view(*e.shape, *(1,) * (h.dim() - e.dim()))


class Unconditioned(nn.Module):
    """Stands where a ``LabelBias`` would be in an unconditional model: adds nothing."""

    def forward(self, h: Tensor, context: Context) -> Tensor:
        return h


def context_bias(data: DataSpec, *shape: int) -> nn.Module:
    """``h -> h + embedding(label)`` of ``shape`` (channels, or a whole ``channels, h, w`` map)
    for a conditional model, the identity otherwise."""
    return LabelBias(data.classes, shape) if data.classes else Unconditioned()
