"""Shapes that parts agree on: the data a model sees and the latent it passes around."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

LatentKind = Literal["continuous", "discrete", "hierarchical"]
LATENT_KINDS: frozenset[str] = frozenset({"continuous", "discrete", "hierarchical"})


@dataclass(frozen=True)
class DataSpec:
    """Images of ``channels x height x width`` whose values are integers in ``[0, levels)``."""

    name: str
    channels: int
    height: int
    width: int
    levels: int

    @property
    def dims(self) -> int:
        return self.channels * self.height * self.width

    def bits_per_dim(self, nats_per_image: float) -> float:
        return nats_per_image / (self.dims * math.log(2))

    def describe(self) -> str:
        return f"{self.name} ({self.channels}x{self.height}x{self.width}, {self.levels} levels)"


@dataclass(frozen=True)
class LatentSpec:
    """What an encoder produces: its kind and shape, plus for a discrete latent the number of
    codes and the size of each code's vector (what a decoder receives per position), and for a
    hierarchical one its levels."""

    kind: LatentKind
    shape: tuple[int, ...] = ()
    codes: int | None = None
    embed_dim: int | None = None
    levels: tuple[LatentSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in LATENT_KINDS:
            raise ValueError(f"latent kind {self.kind!r} is not one of {sorted(LATENT_KINDS)}")
        if self.kind == "discrete" and not self.codes:
            raise ValueError("a discrete latent needs its number of codes")

    def describe(self) -> str:
        dims = "x".join(map(str, self.shape))
        if self.kind == "discrete":
            return f"discrete latent ({self.codes} codes over {dims})"
        if self.kind == "hierarchical":
            return f"hierarchical latent ({len(self.levels)} levels)"
        return f"continuous latent ({dims})"


def continuous(*shape: int) -> LatentSpec:
    return LatentSpec("continuous", tuple(shape))


def discrete(codes: int, embed_dim: int, *shape: int) -> LatentSpec:
    return LatentSpec("discrete", tuple(shape), codes=codes, embed_dim=embed_dim)
