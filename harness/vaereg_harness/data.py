"""Data sets as uint8 intensity tensors: the embedded digits, MNIST and Fashion-MNIST from their
IDX files as shipped, CIFAR-10 through torchvision, and folders of images. Nothing here
touches the network unless ``download`` is asked."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaereg import DataSpec, UsageError
from vaereg.data import Dataset
from vaereg_harness.files import check_path_name
from vaereg_harness.idx import find_idx, read_idx

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
DIGITS_TRAIN = 1437  # digits: images [0, 1437) train, [1437, 1797) test (80/20, sklearn's order)


def safe_name(text: str) -> str:
    """``text`` as a file name: every run of other characters than ``A-Za-z0-9._=-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)


def load_dataset(name: str, root: str | Path = "data", download: bool = False,
                 skip_bad_images: bool = False, image_mode: str | None = None) -> Dataset:
    """``digits``, ``mnist``, ``binarized-mnist``, ``fashion-mnist``, ``cifar10`` or ``folder:PATH``
    (``skip_bad_images`` and ``image_mode`` apply to a folder)."""
    if name == "digits":
        return _digits()
    if name.startswith("folder:"):
        check_path_name(name.removeprefix("folder:"), "--dataset folder:")
        return load_folder(Path(name.removeprefix("folder:")), skip_bad_images, image_mode)
    if name in IDX_SETS:
        return _idx_set(name, Path(root), download)
    if name in TORCHVISION_SETS:
        return _torchvision(name, Path(root), download)
    raise UsageError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}, folder:PATH")


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    spec = DataSpec("digits", 1, 8, 8, 17)
    cut = DIGITS_TRAIN
    return Dataset(spec, images[:cut], images[cut:], labels[:cut], labels[cut:])


# name -> torchvision class, also the folder torchvision keeps its files in under the root
IDX_SETS = {"mnist": "MNIST", "binarized-mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# name -> (torchvision class, folder torchvision expects under the root, files it needs)
TORCHVISION_SETS = {"cifar10": ("CIFAR10", "cifar-10-batches-py", "data_batch_1..5 and test_batch")}
DATASET_NAMES = ("digits", *IDX_SETS, *TORCHVISION_SETS)


def _idx_set(name: str, root: Path, download: bool) -> Dataset:
    """The four IDX files as shipped: gzipped or not, flat in ``root`` or in torchvision's
    ``root/<Folder>/raw`` (``--download`` fetches them there through torchvision)."""
    folder = IDX_SETS[name]
    paths = [find_idx(root, folder, stem) for stem in IDX_FILES]
    if None in paths and download:
        import torchvision.datasets as tvd

        for split in (True, False):
            getattr(tvd, folder)(str(root), train=split, download=True)
        paths = [find_idx(root, folder, stem) for stem in IDX_FILES]
    if None in paths:
        missing = IDX_FILES[paths.index(None)]
        raise UsageError(
            f"{name} not found: {missing} is missing; expected {', '.join(IDX_FILES)} (each raw or .gz) in "
            f"{root} or {root / folder / 'raw'}; point --data-root at the folder holding them, or pass "
            f"--download on a machine with a network"
        )
    x_train, y_train, x_test, y_test = (read_idx(p, 3 if "images" in p.name else 1) for p in paths)
    for images, labels, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if images.shape[0] != labels.shape[0]:
            raise UsageError(f"{name}: {split} has {images.shape[0]} images but {labels.shape[0]} labels; "
                             f"the IDX files do not belong together")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UsageError(f"{name}: train images are {x_train.shape[1:]} but test images {x_test.shape[1:]}")
    train, test = (torch.from_numpy(x.copy()).unsqueeze(1) for x in (x_train, x_test))
    labels_train, labels_test = (torch.from_numpy(y.astype(np.int64)) for y in (y_train, y_test))
    binarize = name == "binarized-mnist"
    if binarize:  # a fixed binarization of the test split; training batches are binarized afresh
        test = torch.bernoulli(test.float() / 255, generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    spec = DataSpec(name, 1, train.shape[2], train.shape[3], 2 if binarize else 256)
    return Dataset(spec, train, test, labels_train, labels_test, binarize=binarize)


def _torchvision(name: str, root: Path, download: bool) -> Dataset:
    import torchvision.datasets as tvd

    cls_name, folder, files = TORCHVISION_SETS[name]
    cls = getattr(tvd, cls_name)
    try:
        train, test = (cls(str(root), train=split, download=download) for split in (True, False))
    except RuntimeError as exc:
        raise UsageError(
            f"{name} not found: expected {files} in {root / folder}; point --data-root at the folder "
            f"holding {folder.split('/')[0]}, or pass --download on a machine with a network ({exc})"
        ) from None

    def images(split) -> Tensor:
        data = torch.as_tensor(np.asarray(split.data))
        return data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2).contiguous()

    def labels(split) -> Tensor:
        return torch.as_tensor(np.asarray(split.targets), dtype=torch.int64)

    x_train, x_test = images(train), images(test)
    channels, height, width = x_train.shape[1:]
    return Dataset(DataSpec(name, channels, height, width, 256), x_train, x_test, labels(train), labels(test))


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
