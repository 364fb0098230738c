"""Data loaders read small files they wrote in the real formats."""

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from vaereg import UsageError
from vaereg_harness.data import load_data
from vaereg_harness.data.builtin import DIGITS_TRAIN


def write_idx(path, array: np.ndarray) -> None:
    """The IDX format of the MNIST files: zero bytes, type 0x08 (uint8), rank, big-endian dims,
    data; gzipped when the name ends in .gz, as the files are shipped."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def idx_folder(root, layout: str, gz: bool, name: str = "FashionMNIST"):
    """The four files, flat in ``root`` (as Debian ships them) or in torchvision's layout."""
    folder = root if layout == "flat" else root / name / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    images = {"train": rng.integers(0, 256, (12, 28, 28)), "t10k": rng.integers(0, 256, (5, 28, 28))}
    suffix = ".gz" if gz else ""
    for split, x in images.items():
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", x)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", np.arange(len(x)) % 10)
    return folder, images


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_fashion_mnist_reads_idx_files_as_shipped(tmp_path, layout, gz):
    _, images = idx_folder(tmp_path, layout, gz)
    data = load_data("fashion-mnist", tmp_path)
    assert (data.spec.channels, data.spec.height, data.spec.width, data.spec.intensities) == (1, 28, 28, 256)
    assert torch.equal(data.test[:, 0], torch.from_numpy(images["t10k"].astype(np.uint8)))
    assert data.train_labels.tolist() == [i % 10 for i in range(12)]


def test_train_images_keeps_the_first_n_training_images_and_the_whole_test_split(tmp_path):
    _, images = idx_folder(tmp_path, "flat", gz=True)
    data = load_data("fashion-mnist", tmp_path, options={"train_images": 5})
    assert torch.equal(data.train[:, 0], torch.from_numpy(images["train"][:5].astype(np.uint8)))
    assert data.train_labels.tolist() == [0, 1, 2, 3, 4] and data.test.shape[0] == 5
    assert data.options == {"train_images": 5}  # part of the run's key
    with pytest.raises(UsageError, match=r"dataset.train_images=13 but fashion-mnist has 12 training images"):
        load_data("fashion-mnist", tmp_path, options={"train_images": 13})


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b"\x00\x00\x09\x03" + b[4:], r"not an IDX file of 3-dimensional unsigned bytes \(magic 00000903"),
        (lambda b: b[:-10], r"holds 9398 bytes of data, but its header says 12x28x28 = 9408"),
        (lambda b: b[:10], r"ends inside its IDX header"),
    ],
)
def test_a_damaged_idx_file_is_named_in_one_line(tmp_path, damage, message):
    folder, _ = idx_folder(tmp_path, "flat", gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UsageError, match=message) as err:
        load_data("fashion-mnist", tmp_path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_truncated_gzip_file_is_named(tmp_path):
    folder, _ = idx_folder(tmp_path, "flat", gz=True)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:15])
    with pytest.raises(UsageError, match="t10k-labels-idx1-ubyte.gz cannot be read as an IDX file"):
        load_data("fashion-mnist", tmp_path)


def test_eval_images_scores_a_fixed_recorded_subset(digits, tmp_path):
    from tests.conftest import vaereg_cli
    from vaereg_harness.store.results import read_results

    a, b = digits.test_subset(50), digits.test_subset(50)
    assert a.test.shape[0] == 50 and torch.equal(a.test, b.test) and not torch.equal(a.test, digits.test[:50])
    assert digits.test_subset(10_000) is digits
    vaereg_cli("eval", "--combo", "gaussian-mlp", "--epochs", "1", "--iw-samples", "4", "--eval-images", "50",
               "--no-fid", "--quiet", cwd=tmp_path)
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert row["eval_images"] == 50


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
    data = load_data("mnist", root)
    assert (data.spec.channels, data.spec.height, data.spec.width, data.spec.intensities) == (1, 28, 28, 256)
    assert torch.equal(data.train[:, 0], torch.from_numpy(images["train"].astype(np.uint8)))
    assert torch.equal(data.test_labels, torch.arange(5) % 10)


def test_binarized_mnist_is_binary_dynamic_in_training_and_fixed_in_test(mnist_root):
    root, _ = mnist_root
    a, b = load_data("binarized-mnist", root), load_data("binarized-mnist", root)
    assert a.spec.intensities == 2 and torch.equal(a.test, b.test) and set(a.test.unique().tolist()) <= {0, 1}
    first, second = a.to_model(a.train, train=True), a.to_model(a.train, train=True)
    assert set(first.unique().tolist()) <= {0.0, 1.0} and not torch.equal(first, second)


def test_missing_files_say_where_they_are_expected(tmp_path):
    expected = rf"train-images-idx3-ubyte is missing; expected .* in {tmp_path} or {tmp_path}/MNIST/raw"
    with pytest.raises(UsageError, match=expected):
        load_data("mnist", tmp_path)


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
    data = load_data(f"folder:{tmp_path}")
    assert (data.spec.channels, data.spec.height, data.spec.width, data.spec.intensities) == (3, 5, 7, 256)
    assert data.train.shape[0] == 8 and data.test.shape[0] == 4
    assert torch.equal(data.train[0].permute(1, 2, 0), torch.from_numpy(pixels[("train", "cat", 0)]))
    assert data.train_labels.tolist() == [0] * 4 + [1] * 4


def test_folder_with_mismatched_sizes_names_the_file(tmp_path):
    for i in range(12):
        Image.new("L", (4, 4) if i != 7 else (5, 4)).save(tmp_path / f"{i:02d}.png")
    with pytest.raises(UsageError, match=r"07.png is 5x4; every image must be 4x4"):
        load_data(f"folder:{tmp_path}")


def test_digits_split_is_fixed_and_disjoint(digits):
    assert digits.spec.intensities == 17 and digits.train.shape == (DIGITS_TRAIN, 1, 8, 8)
    assert digits.test.shape[0] == 1797 - DIGITS_TRAIN and int(digits.train.max()) == 16


def test_folder_options_come_from_set_or_from_the_switches(tmp_path):
    from click.testing import CliRunner

    from vaereg_harness import api
    from vaereg_harness.cli import main

    for i in range(10):
        Image.new("L", (4, 4), 10 * i).save(tmp_path / f"{i:02d}.png")
    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "red.png")
    with pytest.raises(UsageError, match=r"mixes greyscale .* give --image-mode L or RGB"):
        load_data(f"folder:{tmp_path}")
    assert load_data(f"folder:{tmp_path}", options={"image_mode": "L"}).spec.channels == 1
    assert api.load_data(f"folder:{tmp_path}", image_mode="RGB").spec.channels == 3
    assert api.load_data(f"folder:{tmp_path}", image_mode="RGB", options={"image_mode": "L"}).spec.channels == 1
    with pytest.raises(UsageError, match=r"""dataset 'folder': image_mode="CMYK" is not a choice; expected one """
                                         r"""of "L", "RGB", or null"""):
        load_data(f"folder:{tmp_path}", options={"image_mode": "CMYK"})
    digits = api.load_data("digits", skip_bad_images=True, image_mode="RGB")  # a switch digits does not take
    assert digits.spec.channels == 1
    base = ["eval", "--combo", "gaussian-mlp", "--dataset", f"folder:{tmp_path}", "--print-config", "--out",
            str(tmp_path / "runs")]
    assert CliRunner().invoke(main, base).exit_code == 2
    for given in (["--set", "dataset.image_mode=L"], ["--image-mode", "L"]):
        result = CliRunner().invoke(main, [*base, *given])
        assert result.exit_code == 0 and 'image_mode = "L"' in result.output, result.output
