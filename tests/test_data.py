"""Data loaders read small files they wrote in the real formats."""

import struct

import numpy as np
import pytest
import torch
from PIL import Image

from vaereg import UsageError
from vaereg_harness.data import DIGITS_TRAIN, load_dataset


def write_idx(path, array: np.ndarray) -> None:
    """The IDX format of the MNIST files: zero bytes, type 0x08 (uint8), rank, big-endian dims, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (12, 28, 28)), "t10k": rng.integers(0, 256, (5, 28, 28))}
    for split, x in images.items():
        write_idx(raw / f"{split}-images-idx3-ubyte", x)
        write_idx(raw / f"{split}-labels-idx1-ubyte", np.arange(len(x)) % 10)
    return tmp_path, images


def test_mnist_reads_idx_files(mnist_root):
    root, images = mnist_root
    data = load_dataset("mnist", root)
    assert (data.spec.channels, data.spec.height, data.spec.width, data.spec.intensities) == (1, 28, 28, 256)
    assert torch.equal(data.train[:, 0], torch.from_numpy(images["train"].astype(np.uint8)))
    assert torch.equal(data.test_labels, torch.arange(5) % 10)


def test_binarized_mnist_is_binary_dynamic_in_training_and_fixed_in_test(mnist_root):
    root, _ = mnist_root
    a, b = load_dataset("binarized-mnist", root), load_dataset("binarized-mnist", root)
    assert a.spec.intensities == 2 and torch.equal(a.test, b.test) and set(a.test.unique().tolist()) <= {0, 1}
    first, second = a.to_model(a.train, train=True), a.to_model(a.train, train=True)
    assert set(first.unique().tolist()) <= {0.0, 1.0} and not torch.equal(first, second)


def test_missing_files_say_where_they_are_expected(tmp_path):
    with pytest.raises(UsageError, match=rf"expected train-images-idx3-ubyte.* in {tmp_path}/MNIST/raw"):
        load_dataset("mnist", tmp_path)


def test_folder_of_pngs_with_splits_and_class_labels(tmp_path):
    rng = np.random.default_rng(1)
    pixels = {}
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.png")
                pixels[(split, cls, i)] = arr
    data = load_dataset(f"folder:{tmp_path}")
    assert (data.spec.channels, data.spec.height, data.spec.width, data.spec.intensities) == (3, 5, 7, 256)
    assert data.train.shape[0] == 8 and data.test.shape[0] == 4
    assert torch.equal(data.train[0].permute(1, 2, 0), torch.from_numpy(pixels[("train", "cat", 0)]))
    assert data.train_labels.tolist() == [0] * 4 + [1] * 4


def test_folder_with_mismatched_sizes_names_the_file(tmp_path):
    for i in range(12):
        Image.new("L", (4, 4) if i != 7 else (5, 4)).save(tmp_path / f"{i:02d}.png")
    with pytest.raises(UsageError, match=r"07.png is 5x4; every image must be 4x4"):
        load_dataset(f"folder:{tmp_path}")


def test_digits_split_is_fixed_and_disjoint(digits):
    assert digits.spec.intensities == 17 and digits.train.shape == (DIGITS_TRAIN, 1, 8, 8)
    assert digits.test.shape[0] == 1797 - DIGITS_TRAIN and int(digits.train.max()) == 16
