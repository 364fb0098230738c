"""A nearest-neighbour 2x upsampling followed by a 3x3 convolution, computed on the small map:
each of the four output phases (row and column parity) sees only two input rows and two input
columns, so the pair is one 2x2 convolution with four kernels per output channel (the sub-pixel
form, Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution ...") and an
interleave. Same weights and values as the pair (to float rounding), 4/9 of its multiply-adds
and no upsampled copy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def phase_taps(weight: Tensor, dim: int) -> Tensor:
    """The 3 taps along ``dim`` of a 3x3 kernel folded onto a 2x upsampled axis: output
    2p + 0 reads x[p-1] with w0 and x[p] with w1 + w2; output 2p + 1 reads x[p] with w0 + w1 and
    x[p+1] with w2. Returns both phases' 2 taps: ``weight``'s shape with ``dim`` of size 2, and
    the phase as a new axis 1."""
    w0, w1, w2 = weight.unbind(dim)
    return torch.stack([torch.stack([w0, w1 + w2], dim), torch.stack([w0 + w1, w2], dim)], 1)


def nearest2x_conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv2d(interpolate(x, scale 2, nearest), weight, bias, padding=1)`` for a 3x3 ``weight``
    ``[O, I, 3, 3]``: ``x`` ``[N, I, H, W]`` to ``[N, O, 2H, 2W]``."""
    n, _, h, w = x.shape
    o = weight.shape[0]
    rows = phase_taps(weight, 2)  # [O, r, I, 2, 3]
    kernels = phase_taps(rows, 4).movedim(1, 2)  # [O, r, s, I, 2, 2]
    # with padding 1, output (m, l) of the 2x2 convolution reads x rows m-1, m and columns l-1, l:
    # phase (r, s) at (p, q) is its output (p + r, q + s)
    phases = F.conv2d(x, kernels.flatten(0, 2), None if bias is None else bias.repeat_interleave(4), padding=1)
    phases = phases.unflatten(1, (o, 2, 2))
    out = x.new_empty(n, o, h, 2, w, 2)
    for r in (0, 1):
        for s in (0, 1):
            out[:, :, :, r, :, s] = phases[:, :, r, s, r:r + h, s:s + w]
    return out.view(n, o, 2 * h, 2 * w)


def fusable(upsample: nn.Module, conv: nn.Module, x: Tensor) -> bool:
    """Whether ``upsample`` then ``conv`` on ``x`` is a nearest 2x upsampling and a 3x3, stride 1,
    padding 1 zero-padded convolution, which `nearest2x_conv3x3` computes."""
    return (isinstance(upsample, nn.Upsample) and upsample.mode == "nearest" and isinstance(conv, nn.Conv2d)
            and upsample.size is not None and tuple(upsample.size) == (2 * x.shape[-2], 2 * x.shape[-1])
            and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def flattened(layers: nn.Sequential) -> list[nn.Module]:
    """The modules of ``layers`` in order, nested ``nn.Sequential`` opened."""
    return [leaf for m in layers for leaf in (flattened(m) if isinstance(m, nn.Sequential) else [m])]


def run_stack(layers: nn.Sequential, x: Tensor) -> Tensor:
    """``layers(x)``, each nearest 2x upsampling followed by a 3x3 convolution (nested
    ``nn.Sequential`` opened) done by `nearest2x_conv3x3`."""
    modules = flattened(layers)
    i = 0
    while i < len(modules):
        if i + 1 < len(modules) and fusable(modules[i], modules[i + 1], x):
            x = nearest2x_conv3x3(x, modules[i + 1].weight, modules[i + 1].bias)
            i += 2
        else:
            x = modules[i](x)
            i += 1
    return x
