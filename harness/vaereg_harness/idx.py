"""IDX files, the format MNIST and Fashion-MNIST ship in (LeCun et al.): two zero bytes, a type
code (0x08: unsigned bytes), the number of dimensions, each dimension as a big-endian uint32,
then the data. Read gzipped or not, with the magic number and the size checked."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from vaereg import UsageError

UNSIGNED_BYTE = 0x08


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
