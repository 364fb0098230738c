"""PNG grids of images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaereg_harness.store.files import atomic_write


def save_grid(images: torch.Tensor, path: Path, *, cols: int | None = None, min_cell: int = 32,
              pad: int = 1) -> Path:
    """Save ``[N, C, H, W]`` images with values in [0, 1] as one PNG grid (``cols`` wide, square
    by default), each cell scaled up (nearest neighbour) to at least ``min_cell`` pixels so
    small images stay visible."""
    n, c, h, w = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    scale = max(1, math.ceil(min_cell / max(h, w)))
    cell_h, cell_w = h * scale + pad, w * scale + pad
    canvas = np.zeros((rows * cell_h + pad, cols * cell_w + pad, c), dtype=np.uint8)
    pixels = (images.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    pixels = pixels.repeat_interleave(scale, 2).repeat_interleave(scale, 3).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = pad + r * cell_h, pad + col * cell_w
        canvas[top:top + h * scale, left:left + w * scale] = pixels[i]
    image = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
