"""PNG grids of images: ``tile`` lays images out as one uint8 array, ``write_png`` writes one."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaereg_harness.store.files import atomic_write


def tile(images: torch.Tensor, cols: int, *, min_cell: int = 32, pad: int = 1) -> np.ndarray:
    """``[N, C, H, W]`` images with values in [0, 1] as one uint8 grid ``[rows * cell + pad,
    cols * cell + pad, C]``, row-major, each image scaled up (nearest neighbour) to at least
    ``min_cell`` pixels, with ``pad`` black pixels between and around the cells."""
    n, c, h, w = images.shape
    rows = math.ceil(n / cols)
    scale = max(1, math.ceil(min_cell / max(h, w)))
    cell_h, cell_w = h * scale + pad, w * scale + pad
    canvas = np.zeros((rows * cell_h + pad, cols * cell_w + pad, c), dtype=np.uint8)
    pixels = (images.float().nan_to_num(0.0).clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    pixels = pixels.repeat_interleave(scale, 2).repeat_interleave(scale, 3).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = pad + r * cell_h, pad + col * cell_w
        canvas[top:top + h * scale, left:left + w * scale] = pixels[i]
    return canvas


def write_png(picture: np.ndarray, path: Path) -> Path:
    """Write a picture ``[H, W, C]`` (C 1, 3 or 4) as a PNG, atomically."""
    image = Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def save_grid(images: torch.Tensor, path: Path, *, cols: int | None = None, min_cell: int = 32,
              pad: int = 1) -> Path:
    """Save ``[N, C, H, W]`` images with values in [0, 1] as one PNG grid (``cols`` wide, square
    by default), laid out by ``tile``."""
    cols = cols or math.ceil(math.sqrt(images.shape[0]))
    return write_png(tile(images, cols, min_cell=min_cell, pad=pad), path)
