"""The data-set contract: a ``Dataset`` of uint8 images with its splits, optional labels and
optional ground-truth factors, and the ``DataSource`` plugin that loads or generates one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from vaereg.context import Context
from vaereg.errors import UsageError
from vaereg.model import Batch
from vaereg.parts import NoOptions
from vaereg.specs import DataSpec


@dataclass
class Dataset:
    """``train``/``test``: ``[N, C, H, W]`` uint8 stored values. With ``binarize`` the stored
    training values are 0..255 intensities and every training batch is binarized afresh
    (dynamic binarization); the test split is stored binarized (once, with a fixed seed)."""

    spec: DataSpec
    train: Tensor
    test: Tensor
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    binarize: bool = False

    def to_model(self, stored: Tensor, *, train: bool) -> Tensor:
        """Model input ``intensity / (intensities - 1)`` in [0, 1] for a batch of stored values."""
        if self.binarize and train:
            return torch.bernoulli(stored.float() / 255)
        return stored.float() / (self.spec.intensities - 1)

    def context(self, labels: Tensor | None) -> Context:
        """The context of images with ``labels``: the label when the model is conditioned on it."""
        return Context(label=labels) if self.spec.classes else Context()

    def batch(self, stored: Tensor, labels: Tensor | None, *, train: bool) -> Batch:
        return Batch(self.to_model(stored, train=train), self.context(labels))

    def test_subset(self, n: int | None) -> Dataset:
        """This data set with ``n`` test images, a fixed subset (seed-0 permutation, kept in
        order), or as it is for None or ``n`` at least the split's size."""
        if n is None or n >= self.test.shape[0]:
            return self
        keep = torch.randperm(self.test.shape[0], generator=torch.Generator().manual_seed(0))[:n].sort().values
        labels = None if self.test_labels is None else self.test_labels[keep]
        return dataclasses.replace(self, test=self.test[keep], test_labels=labels)

    def conditioned(self, on: str | None) -> Dataset:
        """This data set with the model conditioned on ``on`` (``"label"``), or as it is for None."""
        if on is None:
            return self
        if on != "label":
            raise UsageError(f"--condition {on!r} is unknown; vaereg conditions on: label")
        if self.train_labels is None or self.test_labels is None:
            raise UsageError(
                f"--condition label: {self.spec.name} has no labels; use a labelled data set "
                f"(folder:PATH with class subfolders, digits, mnist, ...) or drop --condition"
            )
        classes = int(max(self.train_labels.max(), self.test_labels.max())) + 1
        return dataclasses.replace(self, spec=dataclasses.replace(self.spec, classes=classes))



class DataSource:
    """A data-set plugin: ``load`` returns a ``Dataset`` read from ``root`` (or generated).
    Built with an instance of its ``Config``. ``argument`` is what follows the name in
    ``--dataset NAME:ARGUMENT`` (``folder:PATH``), None without one."""

    Config: ClassVar[type] = NoOptions

    def __init__(self, config: object):
        self.config = config

    def load(self, root: Path, *, download: bool = False, argument: str | None = None) -> Dataset:
        raise NotImplementedError
