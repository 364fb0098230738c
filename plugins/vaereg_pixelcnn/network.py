"""A gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders") over a grid of discrete values, with a sampler that computes only what the next
position needs.

Raster order over ``(row, column)``; the ``C`` channels of one position are predicted together
from the positions before it. Two stacks per layer:

- the vertical stack at ``(i, j)`` sees rows strictly above ``i`` (a ``(k//2 + 1) x k``
  convolution whose output is shifted down one row), so it can feed the horizontal stack;
- the horizontal stack at ``(i, j)`` sees row ``i`` up to column ``j - 1`` in the first layer
  (type A: the centre excluded) and up to ``j`` after it (type B), plus the vertical stack at
  ``(i, j)`` through a 1x1 link. Together they cover every earlier position: no blind spot.

Gates are ``tanh(a) * sigmoid(b)``; a conditioning map (decoder features, another code map)
enters every gate through a 1x1 convolution, and a class label through a learned bias per
layer (the paper's class-conditional PixelCNN, V^T h with h one-hot). ``sample(fast=True)`` runs
the cached sampler of ``cached.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaereg_pixelcnn.cached import sample_cached


def gate(t: Tensor) -> Tensor:
    a, b = t.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    def __init__(self, width: int, kernel: int, cond_channels: int, first: bool):
        super().__init__()
        self.first, self.rows, self.half = first, kernel // 2 + 1, kernel // 2
        self.vertical = nn.Conv2d(width, 2 * width, (self.rows, kernel))
        self.horizontal = nn.Conv2d(width, 2 * width, (1, self.half + 1))
        self.link = nn.Conv2d(2 * width, 2 * width, 1)
        self.out = nn.Conv2d(width, width, 1)
        self.cond = nn.Conv2d(cond_channels, 4 * width, 1) if cond_channels else None
        self.shift = 1 if first else 0  # type A excludes the centre column

    def vertical_pre(self, v: Tensor) -> Tensor:
        """Pre-activations of the vertical stack: output row ``i`` is computed from input rows
        ``i - k//2 - 1 .. i - 1`` (strictly above)."""
        return self.vertical(F.pad(v, (self.half, self.half, self.rows, 0))[:, :, :-1])

    def horizontal_pre(self, h: Tensor) -> Tensor:
        """Pre-activations of the horizontal stack: column ``j`` is computed from columns
        ``j - k//2 - shift .. j - shift``."""
        padded = F.pad(h, (self.half + self.shift, 0, 0, 0))
        return self.horizontal(padded[..., :-1] if self.shift else padded)

    def combine(self, v_pre: Tensor, h_pre: Tensor, h_in: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """Gate both stacks at the same positions; ``cond`` is this layer's projected condition."""
        c_v, c_h = cond.chunk(2, dim=1) if cond is not None else (0, 0)
        v_out = gate(v_pre + c_v)
        h_out = self.out(gate(h_pre + self.link(v_pre) + c_h))
        return v_out, h_out if self.first else h_out + h_in

    def forward(self, v: Tensor, h: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.combine(self.vertical_pre(v), self.horizontal_pre(h), h, cond)


class GatedPixelCNN(nn.Module):
    """Logits ``[N, C, values, H, W]`` for a grid ``[N, C, H, W]`` of integers in ``[0, values)``."""

    def __init__(self, values: int, channels: int, cond_channels: int, width: int, layers: int, kernel: int,
                 classes: int = 0):
        super().__init__()
        if kernel < 2 or layers < 1:
            raise ValueError("a PixelCNN needs kernel >= 2 and layers >= 1")
        self.values, self.channels = values, channels
        self.label_bias = nn.ModuleList(nn.Embedding(classes, 4 * width) for _ in range(layers)) if classes else None
        self.embed = nn.Embedding(channels * values, width)
        self.register_buffer("offsets", torch.arange(channels).view(1, channels, 1, 1) * values, persistent=False)
        self.layers = nn.ModuleList(GatedLayer(width, kernel, cond_channels, first=i == 0) for i in range(layers))
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(width, width, 1), nn.ReLU(), nn.Conv2d(width, channels * values, 1)
        )

    def embed_input(self, x: Tensor) -> Tensor:
        """Sum of one embedding per channel: ``[N, C, H, W] -> [N, width, H, W]``."""
        return self.embed(x + self.offsets).sum(1).movedim(-1, 1)

    def conditions(self, cond: Tensor | None, label: Tensor | None, size: tuple[int, int]) -> list[Tensor | None]:
        """Each layer's gate bias ``[N, 4 * width, H, W]`` from the map ``cond`` and the ``label``."""
        out = []
        for i, layer in enumerate(self.layers):
            c = layer.cond(cond) if cond is not None else None
            if self.label_bias is not None:
                if label is None:
                    raise ValueError("this PixelCNN is class-conditional: give a label")
                b = self.label_bias[i](label)[:, :, None, None]
                c = b.expand(-1, -1, *size) if c is None else c + b
            out.append(c)
        return out

    def trunk(self, e: Tensor, cond: Tensor | None = None, label: Tensor | None = None) -> Tensor:
        """Logits from an embedded grid ``e`` (exposed so tests can differentiate through it)."""
        v = h = e
        for layer, c in zip(self.layers, self.conditions(cond, label, e.shape[2:]), strict=True):
            v, h = layer(v, h, c)
        return self._logits(h)

    def _logits(self, h: Tensor) -> Tensor:
        n, _, height, width = h.shape
        return self.head(h).view(n, self.channels, self.values, height, width).float()

    def forward(self, x: Tensor, cond: Tensor | None = None, label: Tensor | None = None) -> Tensor:
        return self.trunk(self.embed_input(x), cond, label)

    def log_prob(self, x: Tensor, cond: Tensor | None = None, label: Tensor | None = None) -> Tensor:
        """log p(x) summed over the grid: ``[N]``."""
        logits = self(x, cond, label)
        return logits.log_softmax(2).gather(2, x.unsqueeze(2)).flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, height: int, width: int, cond: Tensor | None = None, label: Tensor | None = None, *,
               fast: bool = True) -> Tensor:
        """Ancestral sampling in raster order. Gumbel noise for every position is drawn up front
        (from the global generator), so the fast and the naive sampler draw the same sample."""
        device = self.embed.weight.device
        u = torch.rand((n, self.channels, self.values, height, width), device=device).clamp_(1e-10, 1 - 1e-7)
        gumbel = -torch.log(-torch.log(u))
        if fast:
            return sample_cached(self, gumbel, cond, label)
        x = torch.zeros((n, self.channels, height, width), dtype=torch.long, device=device)
        for i in range(height):
            for j in range(width):  # the whole map again for each position
                logits = self(x, cond, label)[..., i, j]
                x[:, :, i, j] = (logits + gumbel[..., i, j]).argmax(2)
        return x
