"""The data-set contract: a ``Dataset`` of uint8 images with its splits, optional labels and
optional ground-truth factors, and the ``DataSource`` plugin that loads or generates one.
``check_dataset`` is the one place a loaded data set is checked before anything uses it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from vaereg.context import Context
from vaereg.errors import UsageError
from vaereg.model import Batch
from vaereg.parts import NoOptions
from vaereg.specs import DataSpec


@dataclass(frozen=True)
class Factors:
    """Ground-truth factors of variation: image ``n`` of a split has factor ``i`` (called
    ``names[i]``) equal to ``train[n, i]`` (or ``test[n, i]``), an integer in ``[0, sizes[i])``.
    ``train`` is ``[N_train, F]`` and ``test`` ``[N_test, F]``, both int64."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    train: Tensor
    test: Tensor


@dataclass
class Dataset:
    """``train``/``test``: ``[N, C, H, W]`` uint8 stored values. With ``binarize`` the stored
    training values are 0..255 intensities and every training batch is binarized afresh
    (dynamic binarization); the test split is stored binarized (once, with a fixed seed).
    Labels (``[N]`` int64) and ``factors`` are optional, given for both splits or neither.
    ``validation`` (optional, stored as the test split is) holds images held out of training
    (``hold_out``), with ``validation_labels`` when the other splits have labels; the factors
    describe the train and test splits only."""

    spec: DataSpec
    train: Tensor
    test: Tensor
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    binarize: bool = False
    factors: Factors | None = None
    #: The data set's options that differ from its defaults, as it was loaded (part of a run's key).
    options: dict[str, Any] = field(default_factory=dict)
    validation: Tensor | None = None
    validation_labels: Tensor | None = None

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
        """This data set with ``n`` test images (and their labels and factors), a fixed subset
        (seed-0 permutation, kept in order), or as it is for None or ``n`` at least the split's size."""
        if n is None or n >= self.test.shape[0]:
            return self
        keep = torch.randperm(self.test.shape[0], generator=torch.Generator().manual_seed(0))[:n].sort().values
        labels = None if self.test_labels is None else self.test_labels[keep]
        factors = None if self.factors is None else dataclasses.replace(self.factors, test=self.factors.test[keep])
        return dataclasses.replace(self, test=self.test[keep], test_labels=labels, factors=factors)

    def hold_out(self, n: int | None) -> Dataset:
        """This data set with ``n`` training images (and their labels) moved to the validation
        split: a fixed choice (seed-0 permutation, each split kept in order); the factors keep the
        remaining training rows. A binarized set's held-out images are binarized once (seed 0),
        as its test split is. As it is for None, or when it already holds out exactly ``n``.
        Made once per ``n``: every run of a sweep shares the same tensors."""
        if n is None or (self.validation is not None and self.validation.shape[0] == n):
            return self
        if self.validation is not None:
            raise UsageError(f"--validation-images {n}: {self.spec.name} already holds out "
                             f"{self.validation.shape[0]} validation images; give that number or drop the option")
        made = self.__dict__.setdefault("_held_out", {})  # not a field: replace() and == ignore it
        if n not in made:
            made[n] = self._moved_to_validation(n)
        return made[n]

    def _moved_to_validation(self, n: int) -> Dataset:
        size = self.train.shape[0]
        if n >= size:
            raise UsageError(f"--validation-images {n}: the training split of {self.spec.name} has {size} images; "
                             f"hold out fewer (at most {size - 1})")
        order = torch.randperm(size, generator=torch.Generator().manual_seed(0))
        held, keep = order[:n].sort().values, order[n:].sort().values
        validation = self.train[held]
        if self.binarize:
            generator = torch.Generator().manual_seed(0)
            validation = torch.bernoulli(validation.float() / 255, generator=generator).to(torch.uint8)
        labels = self.train_labels
        factors = None if self.factors is None else dataclasses.replace(self.factors, train=self.factors.train[keep])
        return dataclasses.replace(
            self, train=self.train[keep], train_labels=None if labels is None else labels[keep], factors=factors,
            validation=validation, validation_labels=None if labels is None else labels[held])

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
    Built with an instance of its ``Config`` (``--set dataset.NAME=VALUE``). ``argument`` is
    what follows the name in ``--dataset NAME:ARGUMENT`` (``folder:PATH``): a source that takes
    one names it in the class attribute ``argument`` (``"PATH"``), and is only ever loaded with
    one; a source with ``argument = None`` is only ever loaded without. Runs and rows are keyed
    by the spec's name, so a source whose options change the images names them in it."""

    Config: ClassVar[type] = NoOptions
    argument: ClassVar[str | None] = None

    def __init__(self, config: object):
        self.config = config

    def load(self, root: Path, *, download: bool = False, argument: str | None = None) -> Dataset:
        raise NotImplementedError


def check_dataset(data: object, what: str) -> Dataset:
    """``data`` when it is a well-formed ``Dataset``; otherwise a one-line usage error starting
    with ``what`` (e.g. ``dataset 'toy' (plugin 'toy')``) that says what is wrong."""
    problem = dataset_problem(data)
    if problem is not None:
        raise UsageError(f"{what} loaded a malformed data set: {problem}")
    return data  # type: ignore[return-value]


def dataset_problem(data: object) -> str | None:
    """What is wrong with ``data`` as a ``Dataset``, or None: the spec, each split's dtype,
    shape and values, and the labels' and factors' rows and values."""
    if not isinstance(data, Dataset):
        return f"load returned a {type(data).__name__}, not a vaereg.Dataset"
    spec = data.spec
    if not isinstance(spec, DataSpec):
        return f"spec is a {type(spec).__name__}, not a vaereg.DataSpec"
    sizes = {"channels": spec.channels, "height": spec.height, "width": spec.width}
    for name, value in sizes.items():
        if type(value) is not int or value < 1:
            return f"spec.{name} is {value!r}; it is a positive integer"
    if type(spec.classes) is not int or spec.classes < 0:
        return f"spec.classes is {spec.classes!r}; it is an integer >= 0 (0: unconditional)"
    if type(spec.intensities) is not int or not 2 <= spec.intensities <= 256:
        return f"spec.intensities is {spec.intensities!r}; it is an integer in 2..256 (uint8 values)"
    if data.binarize and spec.intensities != 2:
        return f"binarize is set but spec.intensities is {spec.intensities}; binarized data has 2 intensities"
    shape = (spec.channels, spec.height, spec.width)
    rows = {}
    splits = ("train", "test") if data.validation is None else ("train", "test", "validation")
    if data.validation is None and data.validation_labels is not None:
        return "validation_labels is given without validation images; give both or neither"
    for split in splits:
        images = getattr(data, split)
        if not isinstance(images, Tensor):
            return f"{split} is a {type(images).__name__}, not a torch.Tensor"
        if images.dtype != torch.uint8:
            return f"{split} is {images.dtype}; images are stored as torch.uint8 intensities"
        if images.ndim != 4 or tuple(images.shape[1:]) != shape or images.shape[0] < 1:
            return (f"{split} has shape {list(images.shape)}; expected [N >= 1, {', '.join(map(str, shape))}] "
                    f"from its spec")
        top = int(images.max())
        if top >= spec.intensities and not (split == "train" and data.binarize):
            return (f"{split} holds the value {top}, but spec.intensities is {spec.intensities} "
                    f"(values 0..{spec.intensities - 1})")
        rows[split] = images.shape[0]
    return _labels_problem(data, rows) or _factors_problem(data.factors, {"train": rows["train"], "test": rows["test"]})


def _labels_problem(data: Dataset, rows: dict[str, int]) -> str | None:
    given = [split for split in rows if getattr(data, f"{split}_labels") is not None]
    if 0 < len(given) < len(rows):
        every = "both splits or neither" if len(rows) == 2 else "every split or none"
        named = " and ".join(f"{split}_labels" for split in given)
        return f"only {named} {'is' if len(given) == 1 else 'are'} given; give labels for {every}"
    for split in given:
        labels = getattr(data, f"{split}_labels")
        problem = _rows_problem(f"{split}_labels", labels, (rows[split],), split)
        if problem is not None:
            return problem
        if int(labels.min()) < 0:
            return f"{split}_labels holds {int(labels.min())}; labels are integers >= 0"
        if data.spec.classes and int(labels.max()) >= data.spec.classes:
            return f"{split}_labels holds {int(labels.max())}, but spec.classes is {data.spec.classes}"
    return None


def _factors_problem(factors: object, rows: dict[str, int]) -> str | None:
    if factors is None:
        return None
    if not isinstance(factors, Factors):
        return f"factors is a {type(factors).__name__}, not a vaereg.data.Factors"
    names, sizes = factors.names, factors.sizes
    if (not isinstance(names, tuple | list) or not names or not all(isinstance(n, str) and n for n in names)
            or len(set(names)) != len(names)):
        return f"factors.names is {names!r}; give one distinct, non-empty name per factor"
    if (not isinstance(sizes, tuple | list) or len(sizes) != len(names)
            or not all(type(s) is int and s >= 1 for s in sizes)):
        return f"factors.sizes is {sizes!r}; give one positive integer per factor ({len(names)} names)"
    for split in rows:
        values = getattr(factors, split)
        problem = _rows_problem(f"factors.{split}", values, (rows[split], len(names)), split)
        if problem is not None:
            return problem
        for i, (name, size) in enumerate(zip(names, sizes, strict=True)):
            low, high = int(values[:, i].min()), int(values[:, i].max())
            if low < 0 or high >= size:
                bad = low if low < 0 else high
                return f"factors.{split} holds {bad} for factor {name!r}, whose size is {size} (values 0..{size - 1})"
    return None


def _rows_problem(what: str, values: object, shape: tuple[int, ...], split: str) -> str | None:
    """Why ``values`` is not an int64 tensor of ``shape``, the first entry being ``split``'s image count."""
    if not isinstance(values, Tensor):
        return f"{what} is a {type(values).__name__}, not a torch.Tensor"
    if values.dtype != torch.int64:
        return f"{what} is {values.dtype}; it is torch.int64 (long)"
    if tuple(values.shape) != shape:
        expected = ", ".join(map(str, shape))
        return f"{what} has shape {list(values.shape)}; expected [{expected}] ({split} has {shape[0]} images)"
    return None
