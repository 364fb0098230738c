"""IDX files, the format MNIST and Fashion-MNIST ship in (LeCun et al.): two zero bytes, a type
code (0x08: unsigned bytes), the number of dimensions, each dimension as a big-endian uint32,
then the data. Read gzipped or not, with the magic number and the size checked; and a data set
made of the four files (train and t10k images and labels)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from vaereg import DataSpec, UsageError
from vaereg.data import Dataset

UNSIGNED_BYTE = 0x08
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of dimension ``ndim`` stored in ``path`` (``.gz`` or raw)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise UsageError(f"{path} cannot be read as an IDX file ({exc}); replace it with the file as shipped") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != UNSIGNED_BYTE or raw[3] != ndim:
        raise UsageError(
            f"{path} is not an IDX file of {ndim}-dimensional unsigned bytes (magic {raw[:4].hex() or 'missing'}, "
            f"expected 0000080{ndim}); give the MNIST-format file as shipped"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UsageError(f"{path} ends inside its IDX header; the file is truncated")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != size:
        raise UsageError(
            f"{path} holds {len(raw) - header} bytes of data, but its header says {'x'.join(map(str, shape))} "
            f"= {size}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_idx(root: Path, folder: str, stem: str) -> Path | None:
    """``stem`` (e.g. ``train-images-idx3-ubyte``), raw or gzipped, flat in ``root`` or in
    torchvision's ``root/<folder>/raw``."""
    for directory in (root, root / folder / "raw"):
        for name in (stem, f"{stem}.gz"):
            if (directory / name).is_file():
                return directory / name
    return None


def load_idx_set(name: str, root: Path, folder: str, download: bool, binarize: bool = False) -> Dataset:
    """The four IDX files as shipped: gzipped or not, flat in ``root`` or in torchvision's
    ``root/<folder>/raw`` (``download`` fetches them there through torchvision's ``folder``
    class). ``binarize``: the test split binarized once (seed 0), training batches afresh."""
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
    if binarize:  # a fixed binarization of the test split; training batches are binarized afresh
        test = torch.bernoulli(test.float() / 255, generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    spec = DataSpec(name, 1, train.shape[2], train.shape[3], 2 if binarize else 256)
    return Dataset(spec, train, test, labels_train, labels_test, binarize=binarize)
