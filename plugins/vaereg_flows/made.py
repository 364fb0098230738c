"""MADE (Germain et al. 2015): a masked MLP whose outputs for dimension i depend only on the
inputs before i in a fixed order, the conditioner of both autoregressive flows here. A context
vector (an encoder's features, a class embedding) enters the first hidden layer unmasked.
Also what both flows do with a stack of MADE steps: build it, and invert it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class MaskedLinear(nn.Linear):
    def __init__(self, n_in: int, n_out: int, mask: Tensor):
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """``z [N, D]`` (and a context ``[N, context_dim]``) -> ``(shift, scale) [N, D]`` each, where
    output i sees only inputs earlier in the order (``reverse`` runs it from the last dimension
    down, so stacked steps alternate). The last layer starts at zero: an identity step."""

    def __init__(self, dim: int, hidden: int, context_dim: int = 0, reverse: bool = False):
        super().__init__()
        self.dim = dim
        order = torch.arange(dim, 0, -1) if reverse else torch.arange(1, dim + 1)
        # hidden unit degrees 0..D-1: a unit of degree d sees inputs up to d (degree 0: the
        # context alone, so even the first dimension's outputs can depend on it)
        hidden_degree = torch.arange(hidden) % dim
        self.order = order
        first = (hidden_degree[:, None] >= order[None]).float()
        middle = (hidden_degree[:, None] >= hidden_degree[None]).float()
        last = (order[:, None] > hidden_degree[None]).float().repeat(2, 1)
        self.layers = nn.ModuleList([MaskedLinear(dim, hidden, first), MaskedLinear(hidden, hidden, middle),
                                     MaskedLinear(hidden, 2 * dim, last)])
        self.context = nn.Linear(context_dim, hidden) if context_dim else None
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.layers[0](z)
        if self.context is not None:
            h = h + self.context(context)
        h = self.layers[1](torch.relu(h))
        shift, scale = self.layers[2](torch.relu(h)).chunk(2, dim=1)
        return shift, scale

    def positions(self) -> list[int]:
        """Dimensions in the order they are generated."""
        return torch.argsort(self.order).tolist()


def alternating(dim: int, steps: int, hidden: int, context_dim: int = 0) -> nn.ModuleList:
    """``steps`` MADEs over ``dim`` dimensions, each in the reverse order of the one before."""
    return nn.ModuleList(MADE(dim, hidden, context_dim, reverse=i % 2 == 1) for i in range(steps))


Solve = Callable[[Tensor, Tensor, Tensor], Tensor]  # (y_i, shift_i, scale_i) -> x_i, all [N]


def invert(steps: nn.ModuleList, y: Tensor, context: Tensor | None, solve: Solve) -> Tensor:
    """The input of a stack of autoregressive steps whose output is ``y`` ``[N, D]``, where
    each step's output i follows from its input i and its MADE's (shift, scale) at i, and
    ``solve`` gives that input back. The steps are undone last first, each one dimension per
    pass in its order: the MADE sees only the dimensions already solved."""
    for step in reversed(steps):
        x = torch.zeros_like(y)
        for i in step.positions():
            shift, scale = step(x, context)
            x[:, i] = solve(y[:, i], shift[:, i], scale[:, i])
        y = x
    return y
