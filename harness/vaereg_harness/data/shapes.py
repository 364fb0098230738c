"""``shapes``: binary images of one shape with known generative factors, generated (no download),
after dSprites (Matthey et al. 2017, "dSprites: Disentanglement testing Sprites dataset").

Five independent factors, in this order: ``shape`` (square, ellipse, heart), ``scale`` (the
shape's bounding radius, evenly from half to all of ``canvas / 5``), ``orientation`` (a rotation
about the shape's centre by ``2 pi k / orientations``, over [0, 2 pi)), and the centre's ``x`` and
``y`` (``positions`` evenly spaced, whole pixels apart, values per axis). Every combination is
drawn exactly once, so the set holds shapes x scales x orientations x positions^2 images; at the
defaults 3 x 4 x 8 x 8 x 8 = 6144 images of 32x32. As in dSprites the square repeats every
quarter-turn and the ellipse every half-turn, so some images coincide. A seeded permutation puts
a fifth of them (rounded, at least one) in the test split. The class label of an image is its
shape factor, so the offline FID classifier and class accuracy have something to learn.

A pixel is lit when its centre lies inside the shape. ``x`` grows rightwards and ``y`` downwards
(image rows). Rotated offsets are rounded to 1e-9 px, so that a pixel centre exactly on an outline
stays on the same side when a quarter- or half-turn maps the pixel grid onto itself: the square and
ellipse then repeat exactly. The same options give the same bytes."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from vaereg import DataSource, DataSpec, Range
from vaereg.data import Dataset, Factors

FACTOR_NAMES = ("shape", "scale", "orientation", "x", "y")
SHAPE_NAMES = ("square", "ellipse", "heart")
TEST_FRACTION = 5  # one image in five is a test image

# The heart: two unit discs centred at (+-LOBE, 0), each joined to the tip (0, -TIP) by its two tangents
# (the convex hull of the disc and the tip). Its bounding box spans y in [-TIP, 1]; the rotation centre is the
# box's centre, and the heart is drawn at unit bounding radius (HEART_RADIUS: the farthest point, on a disc).
LOBE, TIP = 0.9, 2.0
_HEART_MID = (1 - TIP) / 2
HEART_RADIUS = math.hypot(LOBE, _HEART_MID) + 1
_AXIS = math.hypot(LOBE, TIP)  # from the tip to a disc's centre
_TAN_HALF_ANGLE = 1 / math.sqrt(_AXIS**2 - 1)  # the tangents' half-angle about that axis


@dataclass
class ShapesConfig:
    """``canvas``: the images' side in pixels; ``shapes``: the first 1..3 of square, ellipse, heart;
    ``scales``, ``orientations``, ``positions`` (per axis): each factor's number of values;
    ``seed``: the train/test split's permutation."""

    # from 16 px the smallest shapes (radius 1.6 px) each hold a disc of radius >= sqrt(2) / 2 px, so a pixel centre
    canvas: Annotated[int, Range(16, 256)] = 32
    shapes: Annotated[int, Range(1, len(SHAPE_NAMES))] = 3
    scales: Annotated[int, Range(1, 32)] = 4
    orientations: Annotated[int, Range(1, 360)] = 8
    positions: Annotated[int, Range(1, 64)] = 8
    seed: Annotated[int, Range(0, 2**31 - 1)] = 0

    def __post_init__(self) -> None:
        # the centres keep the largest shape (radius canvas / 5) inside: 3/5 of the canvas, 1 px apart at least
        if 3 * self.canvas < 5 * (self.positions - 1):
            most = 3 * self.canvas // 5 + 1
            least = math.ceil(5 * (self.positions - 1) / 3)
            raise ValueError(f"positions={self.positions} do not fit on a {self.canvas}-pixel canvas (the largest "
                             f"shape has radius {self.canvas / 5:g} px); give positions <= {most} or canvas >= {least}")
        if self.shapes * self.scales * self.orientations * self.positions**2 < 2:
            raise ValueError("shapes, scales, orientations and positions all 1 give one image; raise one of them "
                             "so both splits have an image")


def factor_sizes(config: ShapesConfig) -> tuple[int, ...]:
    """The number of values of shape, scale, orientation, x and y."""
    return (config.shapes, config.scales, config.orientations, config.positions, config.positions)


def radii(config: ShapesConfig) -> np.ndarray:
    """The bounding radius in pixels at each scale value: evenly from ``canvas / 10`` to ``canvas / 5``."""
    top = config.canvas / 5
    if config.scales == 1:
        return np.array([top])
    return top * (0.5 + 0.5 * np.arange(config.scales) / (config.scales - 1))


def angles(config: ShapesConfig) -> np.ndarray:
    """The rotation in radians (counter-clockwise as seen) at each orientation value."""
    return 2 * math.pi * np.arange(config.orientations) / config.orientations


def centres(config: ShapesConfig) -> np.ndarray:
    """The centre's coordinate in pixels (0 at the canvas's left or top edge) at each position value:
    whole pixels apart, centred on the canvas, so all of them sit on a pixel corner or all on a centre."""
    if config.positions == 1:
        return np.array([config.canvas / 2])
    step = 3 * config.canvas // (5 * (config.positions - 1))  # the widest whole step leaving the shape inside
    return (config.canvas - step * (config.positions - 1)) / 2 + step * np.arange(config.positions)


def all_factors(config: ShapesConfig) -> np.ndarray:
    """``[N, 5]`` int64: every combination of the factors once, the last factor varying fastest."""
    grids = np.meshgrid(*(np.arange(s) for s in factor_sizes(config)), indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)


def _inside(shape: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether the points ``(u, v)`` (unit bounding radius, y up) lie in the shape of each row."""
    square = np.maximum(np.abs(u), np.abs(v)) <= 1 / math.sqrt(2)
    ellipse = u**2 + (2 * v) ** 2 <= 1
    x, y = np.abs(u) * HEART_RADIUS, v * HEART_RADIUS + _HEART_MID  # the right half, in the heart's own units
    disc = (x - LOBE) ** 2 + y**2 <= 1
    along = (x * LOBE + (y + TIP) * TIP) / _AXIS  # from the tip towards the disc's centre
    across = np.abs(x * TIP - (y + TIP) * LOBE) / _AXIS
    cone = (along >= 0) & (across <= along * _TAN_HALF_ANGLE) & (along <= _AXIS - 1 / _AXIS)  # up to the tangent points
    heart = disc | cone
    return np.select([shape == 0, shape == 1], [square, ellipse], heart)


def render(factors: np.ndarray, config: ShapesConfig, chunk: int = 1024) -> np.ndarray:
    """``[N, 1, canvas, canvas]`` uint8 images (0 or 1) of the shapes that ``factors`` (``[N, 5]``) describe."""
    grid = np.arange(config.canvas) + 0.5  # pixel centres
    out = np.empty((len(factors), 1, config.canvas, config.canvas), dtype=np.uint8)
    for start in range(0, len(factors), chunk):
        f = factors[start:start + chunk]
        shape, radius, theta = f[:, 0, None, None], radii(config)[f[:, 1]], angles(config)[f[:, 2]]
        dx = grid[None, None, :] - centres(config)[f[:, 3], None, None]
        dy = centres(config)[f[:, 4], None, None] - grid[None, :, None]  # y up, rows down
        cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        # rotating the point by -theta rotates the shape by theta
        u = np.round(cos * dx + sin * dy, 9) / radius[:, None, None]
        v = np.round(cos * dy - sin * dx, 9) / radius[:, None, None]
        out[start:start + chunk, 0] = _inside(shape, u, v)
    return out


def split(config: ShapesConfig) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``all_factors(config)`` of the train and test images, each in increasing order:
    the test split is the first fifth (rounded, at least one) of a permutation seeded by ``seed``."""
    count = math.prod(factor_sizes(config))
    order = np.random.default_rng(config.seed).permutation(count)
    cut = max(1, round(count / TEST_FRACTION))
    return np.sort(order[cut:]), np.sort(order[:cut])


def spec_name(config: ShapesConfig) -> str:
    """``shapes`` at the defaults, else with each changed option: ``shapes-canvas16-positions4``."""
    defaults = dataclasses.asdict(ShapesConfig())
    return "shapes" + "".join(f"-{k}{v}" for k, v in dataclasses.asdict(config).items() if v != defaults[k])


def factor_grid(config: ShapesConfig, zoom: int = 1) -> np.ndarray:
    """A picture of the factors, ``[rows, columns]`` uint8 grey: one row per factor (shape, scale,
    orientation, x, y) varying it over all its values from a base image (the last shape at the
    largest scale, orientation 0, the middle position), 1-pixel grey lines between cells, each
    pixel repeated ``zoom`` times along both axes (nearest neighbour)."""
    sizes = factor_sizes(config)
    base = np.array([config.shapes - 1, config.scales - 1, 0, config.positions // 2, config.positions // 2])
    side, columns = config.canvas + 1, max(sizes)
    picture = np.full((len(sizes) * side + 1, columns * side + 1), 128, dtype=np.uint8)
    for row, size in enumerate(sizes):
        varied = np.repeat(base[None], size, axis=0)
        varied[:, row] = np.arange(size)
        for column, image in enumerate(render(varied, config)):
            top, left = row * side + 1, column * side + 1
            picture[top:top + config.canvas, left:left + config.canvas] = image[0] * 255
    return picture.repeat(zoom, axis=0).repeat(zoom, axis=1)


class Shapes(DataSource):
    """Binary dSprites-like images with shape, scale, orientation, x and y as ground-truth factors
    and the shape as class label; 6144 images of 32x32 at the defaults (see the module)."""

    Config = ShapesConfig

    def load(self, root: Path, *, download: bool = False, argument: str | None = None) -> Dataset:
        config = self.config
        factors = all_factors(config)
        train, test = (torch.from_numpy(i) for i in split(config))
        images = torch.from_numpy(render(factors, config))
        values = torch.from_numpy(factors)
        spec = DataSpec(spec_name(config), 1, config.canvas, config.canvas, 2)  # runs are keyed by the name
        return Dataset(spec, images[train], images[test], values[train, 0], values[test, 0],
                       factors=Factors(FACTOR_NAMES, factor_sizes(config), values[train], values[test]))
