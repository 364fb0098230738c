"""vaereg's own data sets, registered through the ``register_datasets`` hook exactly as a third
party registers its own: scikit-learn's digits, MNIST, binarized MNIST and Fashion-MNIST from
their IDX files, CIFAR-10 through torchvision, and folders of images. Nothing here touches the
network unless ``download`` is asked."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import torch
from torch import Tensor

from vaereg import DataSource, DataSpec, Range, UsageError, hookimpl
from vaereg.data import Dataset
from vaereg_harness.data.folder import FolderConfig, load_folder
from vaereg_harness.data.idx import load_idx_set
from vaereg_harness.data.shapes import Shapes
from vaereg_harness.store.files import check_path_name

VAEREG_PLUGIN_API = 3

DIGITS_TRAIN = 1437  # digits: images [0, 1437) train, [1437, 1797) test (80/20, sklearn's order)


class Digits(DataSource):
    """scikit-learn's embedded 8x8 handwritten digits (17 intensities, 10 classes), no download."""

    def load(self, root: Path, *, download: bool = False, argument: str | None = None) -> Dataset:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(bunch.target.astype(np.int64))
        cut = DIGITS_TRAIN
        return Dataset(DataSpec("digits", 1, 8, 8, 17), images[:cut], images[cut:], labels[:cut], labels[cut:])


@dataclass
class IDXConfig:
    """``train_images``: train on the first N images of the training split (0: all of them), for a
    budget smaller than an epoch of 60000; the test split is untouched."""

    train_images: Annotated[int, Range(0, 100_000_000)] = 0


class IDXSet(DataSource):
    """A data set shipped as four IDX files; ``folder`` is torchvision's class for it, also the
    folder torchvision keeps its files in under the root."""

    Config = IDXConfig
    name: ClassVar[str]
    folder: ClassVar[str]
    binarize: ClassVar[bool] = False

    def load(self, root: Path, *, download: bool = False, argument: str | None = None) -> Dataset:
        data = load_idx_set(self.name, root, self.folder, download, self.binarize)
        n = self.config.train_images
        if not n:
            return data
        if n > data.train.shape[0]:
            raise UsageError(f"dataset.train_images={n} but {self.name} has {data.train.shape[0]} training images; "
                             f"give at most {data.train.shape[0]} (0: all)")
        return dataclasses.replace(data, train=data.train[:n], train_labels=data.train_labels[:n])


class MNIST(IDXSet):
    """MNIST handwritten digits, 28x28, 256 intensities, from its IDX files."""

    name, folder = "mnist", "MNIST"


class BinarizedMNIST(IDXSet):
    """MNIST binarized: afresh for every training batch, once (seed 0) for the test split."""

    name, folder, binarize = "binarized-mnist", "MNIST", True


class FashionMNIST(IDXSet):
    """Fashion-MNIST clothing images, 28x28, 256 intensities, from its IDX files."""

    name, folder = "fashion-mnist", "FashionMNIST"


class CIFAR10(DataSource):
    """CIFAR-10, 32x32 colour, 10 classes, in torchvision's layout under the root."""

    folder = "cifar-10-batches-py"  # where torchvision keeps it under the root

    def load(self, root: Path, *, download: bool = False, argument: str | None = None) -> Dataset:
        from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

        try:
            train, test = (TorchvisionCIFAR10(str(root), train=split, download=download) for split in (True, False))
        except RuntimeError as exc:
            raise UsageError(
                f"cifar10 not found: expected data_batch_1..5 and test_batch in {root / self.folder}; point "
                f"--data-root at the folder holding {self.folder}, or pass --download on a machine with a network "
                f"({exc})"
            ) from None

        def images(split) -> Tensor:  # torchvision keeps [N, H, W, C]
            return torch.as_tensor(np.asarray(split.data)).permute(0, 3, 1, 2).contiguous()

        def labels(split) -> Tensor:
            return torch.as_tensor(np.asarray(split.targets), dtype=torch.int64)

        x_train, x_test = images(train), images(test)
        channels, height, width = x_train.shape[1:]
        spec = DataSpec("cifar10", channels, height, width, 256)
        return Dataset(spec, x_train, x_test, labels(train), labels(test))


class Folder(DataSource):
    """Images under a folder (``folder:PATH``), labelled by class subfolder when every image has one."""

    Config = FolderConfig
    argument = "PATH"

    def load(self, root: Path, *, download: bool = False, argument: str | None = None) -> Dataset:
        check_path_name(argument, "--dataset folder:")
        return load_folder(Path(argument), self.config.skip_bad_images, self.config.image_mode)


@hookimpl
def register_datasets(register):
    register("digits", Digits)
    register("mnist", MNIST)
    register("binarized-mnist", BinarizedMNIST)
    register("fashion-mnist", FashionMNIST)
    register("cifar10", CIFAR10)
    register("folder", Folder)
    register("shapes", Shapes)
