"""NVAE's residual cells (Vahdat & Kautz 2020, fig. 3), with Swish (SiLU) activations."""

from __future__ import annotations

from torch import Tensor, nn


class SqueezeExcite(nn.Module):
    """Channel gates from globally pooled features (Hu et al. 2018)."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = max(channels // 16, 4)
        self.gate = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x.mean((2, 3)))[:, :, None, None]


class EncoderCell(nn.Module):
    """x + 0.1 * SE(conv3x3(Swish(BN(conv3x3(Swish(BN(x)))))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            SqueezeExcite(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.1 * self.body(x)


class DecoderCell(nn.Module):
    """x + 0.1 * SE(BN(conv1x1(Swish(BN(dwconv5x5(Swish(BN(conv1x1(BN(x)))))))))): an inverted
    bottleneck whose wide middle is a depthwise-separable 5x5 convolution."""

    def __init__(self, channels: int, expand: int = 3):
        super().__init__()
        wide = channels * expand
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.Conv2d(channels, wide, 1),
            nn.BatchNorm2d(wide), nn.SiLU(), nn.Conv2d(wide, wide, 5, padding=2, groups=wide),
            nn.BatchNorm2d(wide), nn.SiLU(), nn.Conv2d(wide, channels, 1),
            nn.BatchNorm2d(channels), SqueezeExcite(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.1 * self.body(x)
