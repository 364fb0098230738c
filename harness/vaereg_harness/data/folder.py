"""Folders of images as a data set (``--dataset folder:PATH``): png, jpg, bmp or gif files,
split into ``train/`` and ``test/`` or every tenth file for test, labelled by class subfolder."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from vaereg import DataSpec, UsageError
from vaereg.data import Dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


@dataclass
class FolderConfig:
    """``skip_bad_images``: skip (and count) unreadable files instead of refusing them
    (``--skip-bad-images``); ``image_mode``: convert every image to greyscale ("L") or colour
    ("RGB"), without which a folder mixing the two is refused (``--image-mode``)."""

    skip_bad_images: bool = False
    image_mode: Literal["L", "RGB"] | None = None


def read_image(path: Path) -> tuple[np.ndarray, str] | str:
    """``(pixels, mode)``, ``[H, W]`` for greyscale ("L") or ``[H, W, 3]`` for colour ("RGB") as
    uint8, or why ``path`` cannot be read. 16-bit images are scaled to 8 bits, not clipped;
    images above Pillow's decompression-bomb limit are refused."""
    from PIL import Image

    if not path.is_file():
        return "not a file (a folder, or a broken link)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                if im.mode.startswith("I"):  # 16-bit (or 32-bit integer) greyscale
                    return np.round(np.asarray(im, dtype=np.float64) / 257).clip(0, 255).astype(np.uint8), "L"
                if im.mode in ("L", "1", "LA"):
                    return np.asarray(im.convert("L")), "L"
                rgb = np.asarray(im.convert("RGB"))
                grey_palette = im.mode == "P" and (rgb == rgb[..., :1]).all()
                return (rgb[..., 0], "L") if grey_palette else (rgb, "RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"too large to read safely (over {Image.MAX_IMAGE_PIXELS} pixels); resize it"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"not a readable image ({str(exc)[:100]})"


def as_mode(pixels: np.ndarray, mode: str) -> np.ndarray:
    """Greyscale ``[H, W]`` or colour ``[H, W, 3]`` uint8 pixels in ``mode`` ("L" or "RGB"); colour
    becomes grey by ITU-R 601 luma, as Pillow converts it."""
    if mode == "RGB" and pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=2)
    if mode == "L" and pixels.ndim == 3:
        return np.round(pixels @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)
    return pixels


def load_folder(path: Path, skip_bad_images: bool = False, image_mode: str | None = None) -> Dataset:
    """Images under ``path``: ``train/`` and ``test/`` subfolders when present, else every tenth
    file (sorted by path) is test. Images in class subfolders are labelled by folder name. An
    unreadable file is an error naming it, or skipped and counted with ``skip_bad_images``;
    greyscale and colour images are not mixed unless ``image_mode`` ("L" or "RGB") says which
    to convert them to."""
    if not path.is_dir():
        raise UsageError(f"folder:{path} is not a folder of images; give folder:PATH to an existing folder")
    splits = {"train": path / "train", "test": path / "test"}
    roots = {split: p if p.is_dir() else path for split, p in splits.items()}
    if all(p.is_dir() for p in splits.values()):
        files = {split: _images_under(p) for split, p in splits.items()}
    else:
        every = _images_under(path)
        files = {"train": [f for i, f in enumerate(every) if i % 10], "test": every[::10]}
    read = {split: [(f, read_image(f)) for f in names] for split, names in files.items()}
    bad = [(f, got) for pairs in read.values() for f, got in pairs if isinstance(got, str)]
    if bad and not skip_bad_images:
        more = f" ({len(bad) - 1} more unreadable files)" if len(bad) > 1 else ""
        raise UsageError(f"{bad[0][0]}: {bad[0][1]}{more}; remove it, or pass --skip-bad-images to skip it")
    if bad:
        print(f"note: skipped {len(bad)} unreadable image(s) in folder:{path}, e.g. {bad[0][0]}: {bad[0][1]}",
              file=sys.stderr)
    good = {split: [(f, got) for f, got in pairs if not isinstance(got, str)] for split, pairs in read.items()}
    if not good["train"] or not good["test"]:
        raise UsageError(f"folder:{path} needs images (png, jpg) for both a train and a test split")
    first_of = {}
    for pairs in good.values():
        for f, (_, mode) in pairs:
            first_of.setdefault(mode, f)
    if len(first_of) > 1 and image_mode is None:
        raise UsageError(f"folder:{path} mixes greyscale ({first_of['L']}) and colour ({first_of['RGB']}) images; "
                         f"give --image-mode L or RGB to convert them to one")
    if image_mode is not None:
        good = {split: [(f, (as_mode(x, image_mode), image_mode)) for f, (x, _) in pairs]
                for split, pairs in good.items()}
    first, (pixels, mode) = good["train"][0]
    shape = pixels.shape

    def stacked(split: str) -> tuple[Tensor, list[str]]:
        arrays, classes = [], []
        for f, (array, _) in good[split]:
            if array.shape != shape:
                raise UsageError(f"{f} is {array.shape[1]}x{array.shape[0]}; every image must be "
                                 f"{shape[1]}x{shape[0]} like {first}")
            arrays.append(array)
            rel = f.relative_to(roots[split])
            classes.append(rel.parts[0] if len(rel.parts) > 1 else "")
        x = torch.from_numpy(np.stack(arrays))
        return (x.unsqueeze(1) if mode == "L" else x.permute(0, 3, 1, 2)).contiguous(), classes

    (x_train, c_train), (x_test, c_test) = stacked("train"), stacked("test")
    names = sorted(set(c_train) | set(c_test))
    labelled = all(c_train) and all(c_test)
    index = {c: i for i, c in enumerate(names)}

    def as_labels(classes: list[str]) -> Tensor | None:
        return torch.tensor([index[c] for c in classes]) if labelled else None

    spec = DataSpec(f"folder:{path}", x_train.shape[1], x_train.shape[2], x_train.shape[3], 256)
    return Dataset(spec, x_train, x_test, as_labels(c_train), as_labels(c_test))


def _images_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
