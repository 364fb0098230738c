"""Shapes that parts agree on: the data a model sees and the latent it passes around."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

LatentKind = Literal["continuous", "discrete", "hierarchical"]
LATENT_KINDS: frozenset[str] = frozenset({"continuous", "discrete", "hierarchical"})


@dataclass(frozen=True)
class DataSpec:
    """Images of ``channels x height x width`` whose values are integers in ``[0, intensities)``.
    ``classes > 0``: every image comes with a class label in ``[0, classes)`` that the model is
    conditioned on (``--condition label``); 0 for an unconditional model."""

    name: str
    channels: int
    height: int
    width: int
    intensities: int
    classes: int = 0

    @property
    def dims(self) -> int:
        return self.channels * self.height * self.width

    def bits_per_dim(self, nats_per_image: float) -> float:
        return nats_per_image / (self.dims * math.log(2))

    def describe(self) -> str:
        return f"{self.name} ({self.channels}x{self.height}x{self.width}, {self.intensities} intensities)"


@dataclass(frozen=True)
class LatentSpec:
    """What an encoder produces: its kind and shape, plus for a discrete latent the size of the
    codebook (``codes``) and the size of each code's vector (what a decoder receives per position), and for a
    hierarchical one its levels, listed from the one nearest the data (z_1) to the top (z_L).

    A hierarchical sample is one flat tensor ``[..., size]``: every level flattened, in that
    order (``split`` and ``join`` convert)."""

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

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def level_kinds(self) -> frozenset[str]:
        """The kinds of a hierarchy's levels (empty for a flat latent)."""
        return frozenset(level.kind for level in self.levels)

    @property
    def is_codes(self) -> bool:
        """A discrete code map, or a hierarchy of them."""
        return self.kind == "discrete" or (self.kind == "hierarchical" and self.level_kinds == {"discrete"})

    def as_levels(self) -> tuple[LatentSpec, ...]:
        """A hierarchy's levels; a flat latent is its own single level."""
        return self.levels if self.kind == "hierarchical" else (self,)

    def split(self, z: Tensor) -> list[Tensor]:
        """A hierarchical sample ``[..., size]`` as its levels ``[..., *level.shape]``; a flat
        latent's sample is its own single level."""
        if self.kind != "hierarchical":
            return [z]
        lead = z.shape[:-1]
        chunks = z.split([level.size for level in self.levels], dim=-1)
        return [c.reshape(*lead, *level.shape) for c, level in zip(chunks, self.levels, strict=True)]

    def join(self, levels: list[Tensor]) -> Tensor:
        """The inverse of ``split``: levels ``[..., *level.shape]`` as one ``[..., size]``."""
        if self.kind != "hierarchical":
            (z,) = levels
            return z
        return torch.cat([t.flatten(t.dim() - len(s.shape)) for t, s in zip(levels, self.levels, strict=True)], -1)

    def describe(self) -> str:
        dims = "x".join(map(str, self.shape))
        if self.kind == "discrete":
            return f"discrete latent ({self.codes} codes over {dims})"
        if self.kind == "hierarchical":
            inner = "/".join(sorted(self.level_kinds))
            return f"hierarchical latent ({len(self.levels)} {inner} levels)"
        return f"continuous latent ({dims})"


def continuous(*shape: int) -> LatentSpec:
    return LatentSpec("continuous", tuple(shape))


def discrete(codes: int, embed_dim: int, *shape: int) -> LatentSpec:
    return LatentSpec("discrete", tuple(shape), codes=codes, embed_dim=embed_dim)


def hierarchy(*levels: LatentSpec) -> LatentSpec:
    """Levels from the one nearest the data (z_1) to the top (z_L)."""
    return LatentSpec("hierarchical", (sum(level.size for level in levels),), levels=tuple(levels))
