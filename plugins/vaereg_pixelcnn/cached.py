"""Cached ancestral sampling for the gated PixelCNN of ``network.py``: keep every layer's
activations and compute only what a new position changes (Ramachandran et al. 2017, "Fast
Generation for Convolutional Autoregressive Models", Sec. 3; Fast PixelCNN++).

- Once per row, every layer's vertical stack for the whole row (it sees only rows above) and
  the row-wide terms of its horizontal gate: the 1x1 link from the vertical stack, the
  condition and the bias.
- Once per position, per layer, one matrix product over the ``k//2 + 1`` columns the
  horizontal stack reads, the gate and the 1x1 output; then the head on that position.

The horizontal stacks live in channels-last row buffers allocated once, so a column window is a
view and each layer's step is a plain ``addmm``. A step's arithmetic is a few hundred thousand
multiply-adds; its cost is the dispatch of its few dozen small kernels. On the CPU they run on
one intra-op thread: too small to split, and on busy shared cores each parallel kernel waits for
a descheduled helper thread (a 16x96x64 ``addmm`` took 4 ms instead of 4 us on 2 loaded cores).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from vaereg_pixelcnn.network import GatedPixelCNN


def _gate(t: Tensor, dim: int) -> Tensor:
    """``tanh(a) * sigmoid(b)`` for the two halves of ``t`` along ``dim``."""
    a, b = t.chunk(2, dim=dim)
    return torch.tanh(a) * torch.sigmoid(b)


def _matrix(conv: torch.nn.Conv2d) -> Tensor:
    """A ``1 x t`` convolution's weight as ``[t * in, out]`` for a flattened channels-last window."""
    out_channels = conv.weight.shape[0]
    return conv.weight[:, :, 0].permute(0, 2, 1).reshape(out_channels, -1).t()


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread while on the CPU; the previous count restored after."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CachedSampler:
    """Logits of ``net`` at one position after another in raster order, for ``n`` grids of
    ``height x width``: call ``row(i)`` at the start of each row, then per column ``logits(j)``
    and ``place(j, code)`` with the code drawn there. Run it without autograd (``torch.inference_mode``)."""

    def __init__(self, net: GatedPixelCNN, n: int, height: int, width: int, cond: Tensor | None = None,
                 label: Tensor | None = None):
        self.net, self.n, self.width = net, n, width
        first = net.layers[0]
        self.rows, self.half = first.rows, first.half
        self.pad = self.half + 1  # zero columns left of each row buffer: the widest window reaches that far
        dim, weight = net.embed.weight.shape[1], net.embed.weight
        self.conds = net.conditions(cond, label, (height, width))
        # vertical-stack inputs with the convolution's zero padding: map row r at r + rows, column c at c + half
        self.vertical = [weight.new_zeros((n, dim, height + self.rows, width + 2 * self.half)) for _ in net.layers]
        # horizontal stacks of the current row, channels-last: [0] is the embedded codes, [l + 1] layer l's output
        self.horizontal = [weight.new_zeros((n, self.pad + width, dim)) for _ in range(len(net.layers) + 1)]
        self.row_terms: list[Tensor] = [None] * len(net.layers)  # type: ignore[list-item]
        self.steps = [(_matrix(layer.horizontal), 1 - layer.shift, layer.out.weight[:, :, 0, 0].t(), layer.out.bias,
                       layer.first) for layer in net.layers]
        self.head = [(conv.weight[:, :, 0, 0].t(), conv.bias) for conv in (net.head[1], net.head[3])]
        self.offsets = net.offsets[:, :, 0, 0]

    def row(self, i: int) -> None:
        """Start row ``i``: move the codes of row ``i - 1`` into the vertical input, then compute
        every layer's vertical stack and row-wide gate terms for row ``i``."""
        pad, half, width = self.pad, self.half, self.width
        if i > 0:
            self.vertical[0][:, :, i - 1 + self.rows, half:half + width] = self.horizontal[0][:, pad:].transpose(1, 2)
        for li, layer in enumerate(self.net.layers):
            v_pre = layer.vertical(self.vertical[li][:, :, i:i + self.rows])  # [n, 2 * dim, 1, width]
            c = self.conds[li]
            c_v, c_h = c[:, :, i:i + 1].chunk(2, dim=1) if c is not None else (0, 0)
            if li + 1 < len(self.net.layers):
                self.vertical[li + 1][:, :, i + self.rows, half:half + width] = _gate(v_pre + c_v, 1)[:, :, 0]
            terms = layer.link(v_pre) + c_h + layer.horizontal.bias[:, None, None]
            self.row_terms[li] = terms[:, :, 0].transpose(1, 2).contiguous()  # [n, width, 2 * dim]

    def logits(self, j: int) -> Tensor:
        """``[n, C, values]``: the logits at ``(i, j)`` given every code placed before it."""
        n, column = self.n, self.pad + j
        for li, (matrix, start, out, bias, first) in enumerate(self.steps):
            window = self.horizontal[li][:, j + start:j + start + self.pad].reshape(n, -1)
            g = _gate(torch.addmm(self.row_terms[li][:, j], window, matrix), -1)
            residual = bias if first else self.horizontal[li][:, column] + bias
            self.horizontal[li + 1][:, column] = torch.addmm(residual, g, out)
        (w1, b1), (w2, b2) = self.head
        hidden = torch.addmm(b1, torch.relu(self.horizontal[-1][:, column]), w1).relu_()
        return torch.addmm(b2, hidden, w2).view(n, self.net.channels, self.net.values).float()

    def place(self, j: int, code: Tensor) -> None:
        """Put the drawn ``code`` ``[n, C]`` at ``(i, j)``."""
        self.horizontal[0][:, self.pad + j] = F.embedding(code + self.offsets, self.net.embed.weight).sum(1)


def sample_cached(net: GatedPixelCNN, gumbel: Tensor, cond: Tensor | None, label: Tensor | None) -> Tensor:
    """Ancestral sampling with the Gumbel-max trick: ``gumbel`` ``[n, C, values, H, W]`` holds
    the noise of every position; returns the codes ``[n, C, H, W]``."""
    n, channels, _, height, width = gumbel.shape
    with torch.inference_mode(), _one_thread(gumbel.device):
        cache = CachedSampler(net, n, height, width, cond, label)
        noise = gumbel.permute(3, 4, 0, 1, 2).contiguous()  # [H, W, n, C, values]: one contiguous block a step
        x = torch.zeros((n, channels, height, width), dtype=torch.long, device=gumbel.device)
        for i in range(height):
            cache.row(i)
            for j in range(width):
                code = (cache.logits(j) + noise[i, j]).argmax(2)
                cache.place(j, code)
                x[:, :, i, j] = code
    return x.clone()  # a normal tensor, usable outside inference mode
