"""Convolutional stacks sized from the data: they halve the image until it is small, and back."""

from __future__ import annotations

import math

from torch import Tensor, nn

from vaereg.context import context_bias
from vaereg.specs import DataSpec

Size = tuple[int, int]


def halvings(height: int, width: int, *, floor: int = 4, steps: int | None = None) -> list[Size]:
    """Spatial sizes from ``(height, width)`` down, halving (rounding up) until both are at
    most ``floor``, or for exactly ``steps`` halvings: ``[(28, 28), (14, 14), (7, 7), (4, 4)]``."""
    sizes = [(height, width)]
    while (steps is None and max(sizes[-1]) > floor) or (steps is not None and len(sizes) <= steps):
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


def halvings_to(height: int, width: int, target: Size) -> list[Size]:
    """The halvings from ``(height, width)`` that end at ``target``."""
    for steps in range(max(height, width).bit_length() + 1):
        sizes = halvings(height, width, steps=steps)
        if sizes[-1] == tuple(target):
            return sizes
    raise ValueError(f"{target} is not reached by halving {height}x{width}")


class DownStack(nn.Sequential):
    """``[N, c_in, H, W] -> [N, width, h, w]``: a stride-2 3x3 convolution per halving."""

    def __init__(self, c_in: int, width: int, sizes: list[Size]):
        layers: list[nn.Module] = [nn.Conv2d(c_in, width, 3, padding=1), nn.SiLU()]
        for _ in sizes[1:]:
            layers += [nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU()]
        super().__init__(*layers)


class UpStack(nn.Sequential):
    """``[N, width, h, w] -> [N, c_out, H, W]``, retracing ``sizes`` (as given to DownStack)."""

    def __init__(self, width: int, c_out: int, sizes: list[Size]):
        layers: list[nn.Module] = []
        for size in reversed(sizes[:-1]):
            layers += [nn.Upsample(size=size), nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
        layers.append(nn.Conv2d(width, c_out, 3, padding=1))
        super().__init__(*layers)


class Reshape(nn.Module):
    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)


def conv_features(data: DataSpec, width: int) -> tuple[nn.Sequential, nn.Module, int]:
    """The conv encoders' shared network: ``trunk`` (a DownStack to at most 4x4, flattened),
    ``condition`` (the label's bias on its features, when conditioned) and the feature count,
    for a head ``nn.Linear(features, ...)``. Encoders keep them as ``self.trunk`` and
    ``self.condition``: features are ``condition(trunk(x), context)``."""
    sizes = halvings(data.height, data.width)
    h, w = sizes[-1]
    features = width * h * w
    return nn.Sequential(DownStack(data.channels, width, sizes), nn.Flatten()), context_bias(data, features), features
