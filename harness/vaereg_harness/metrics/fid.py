"""FID between a model's samples and the test split, through torch-fidelity, with the
protocol recorded: the extractor (name and weight hash), the reference, and the floor (the FID
between the training and test splits under the same extractor).

The protocol extracts features once: a split's features (and FID statistics) are cached on
disk under torch-fidelity's names and atomic write, the samples' features in memory for the
draw last scored, so FID, KID, precision/recall and the classifier score reduce one extraction."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor
from torch_fidelity.utils import (
    cache_lookup_group_recompute_all_on_any_miss,
    cache_lookup_one_recompute_on_miss,
    create_feature_extractor,
    get_featuresdict_from_dataset,
)

from vaereg import UsageError
from vaereg_harness.data import Dataset, safe_name
from vaereg_harness.metrics.classifier import (
    EXTRACTOR,
    ClassifierFeatures,
    accuracy,
    as_uint8,
    cached_classifier,
    content_hash,
    file_hash,
    load_classifier,
    weights_hash,
)
from vaereg_harness.store.locks import file_lock

#: Images a batch through the extractor.
BATCH = 256

INCEPTION = "inception-v3-compat"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's name in torch's cache

if EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(EXTRACTOR, ClassifierFeatures)


def default_cache_dir() -> Path:
    return Path(os.environ.get("VAEREG_CACHE") or Path.home() / ".cache" / "vaereg")


class ImageSet(torch.utils.data.Dataset):
    """uint8 images ``[N, C, H, W]`` as the map-style data set torch-fidelity reads; Inception
    gets three channels."""

    def __init__(self, images: Tensor, rgb: bool):
        self.images = images.expand(-1, 3, -1, -1) if rgb and images.shape[1] == 1 else images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i]


@dataclass
class Extractor:
    name: str  # torch-fidelity's registry name
    layer: str
    weights: Path
    digest: str
    accuracy: float | None = None  # the classifier's on the test split; None for Inception
    seconds: float = 0.0  # spent obtaining it in this run (training, or reading the cache)

    def describe(self) -> str:
        return f"{self.name}:{self.digest[:12]}"


def inception_weights(given: Path | None) -> Path | None:
    if given is not None:
        if not Path(given).is_file():
            raise UsageError(f"--inception-weights {given}: no such file; give torch-fidelity's {INCEPTION_FILE}")
        return Path(given)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return cached if cached.is_file() else None


@dataclass
class FIDProtocol:
    """How FID is computed for one data set; ``score`` compares images with the test split.
    ``features`` (of samples) and ``split_features`` (of a split) are what the other sample
    quality metrics reduce."""

    data: Dataset
    extractor: Extractor
    cache_dir: Path
    _sampled: tuple[str, dict[str, Tensor]] | None = field(default=None, init=False, repr=False)
    _memo: dict[tuple[str, str], Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def rgb(self) -> bool:
        return self.extractor.name == INCEPTION

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers extracted from samples: FID's, and the classifier's logits where it is the extractor."""
        return (self.extractor.layer, "logits") if self.extractor.name == EXTRACTOR else (self.extractor.layer,)

    @cached_property
    def _network(self) -> FeatureExtractorBase:
        return create_feature_extractor(self.extractor.name, list(self.layers), cuda=False, verbose=False,
                                        feature_extractor_weights_path=str(self.extractor.weights))

    @cached_property
    def _splits(self) -> dict[str, Tensor]:
        """The train and test splits as uint8 images, converted once."""
        return {which: as_uint8(self.data.to_model(stored, train=False))
                for which, stored in (("train", self.data.train), ("test", self.data.test))}

    @cached_property
    def _keys(self) -> dict[str, str]:
        return {which: f"{safe_name(self.data.spec.name)}-{which}-{content_hash(images)[:16]}-"
                       f"{self.extractor.digest[:16]}" for which, images in self._splits.items()}

    def split(self, which: str) -> Tensor:
        return self._splits[which]

    def cache_key(self, which: str) -> str:
        """Names the cached features and statistics of a split: its content hash and the extractor's."""
        return self._keys[which]

    @property
    def reference(self) -> str:
        return f"test:{self.data.test.shape[0]}"

    def _extract(self, images: Tensor) -> dict[str, Tensor]:
        """Every layer of ``layers`` for uint8 ``images``, in one pass of the extractor."""
        return get_featuresdict_from_dataset(ImageSet(images, self.rgb), self._network, BATCH, cuda=False,
                                             save_cpu_ram=True, verbose=False)

    @property
    def _disk(self) -> dict[str, object]:
        """torch-fidelity's cache settings: its file names and atomic write under our cache folder."""
        return {"cache": True, "cache_root": str(self.cache_dir / "fidelity"), "verbose": False}

    def _remember(self, key: tuple[str, str], make: Callable[[], Any]) -> Any:
        """``make()`` once per protocol; one process at a time fills a split's cache entry, so
        concurrent runs never extract a split twice."""
        if key not in self._memo:
            which = key[1]
            lock = self.cache_dir / "fidelity" / f"{self.cache_key(which)}.lock"
            with file_lock(lock, f"caching the {which} split's FID features"):
                self._memo[key] = make()
        return self._memo[key]

    def split_features(self, which: str) -> Tensor:
        """``[N, D]`` features of the ``train`` or ``test`` split on FID's layer, extracted once and
        cached on disk (torch-fidelity's ``<key>-<extractor>-features-<layer>`` file)."""
        layer = self.extractor.layer
        return self._remember(("features", which), lambda: cache_lookup_group_recompute_all_on_any_miss(
            f"{self.cache_key(which)}-{self.extractor.name}-features-", [layer],
            lambda: {layer: self._extract(self.split(which))[layer]}, **self._disk)[layer])

    def _statistics(self, which: str) -> dict[str, np.ndarray]:
        """A split's FID statistics, cached on disk (torch-fidelity's ``<key>-<extractor>-stat-fid-<layer>``)."""
        return self._remember(("statistics", which), lambda: cache_lookup_one_recompute_on_miss(
            f"{self.cache_key(which)}-{self.extractor.name}-stat-fid-{self.extractor.layer}",
            lambda: fid_features_to_statistics(self.split_features(which)), **self._disk))

    def features(self, images01: Tensor) -> dict[str, Tensor]:
        """Layer -> ``[n, D]`` features of ``images01`` (``layers``); extracted once for the images
        last asked about (keyed by their uint8 content), so every metric of a draw shares them."""
        images = as_uint8(images01)
        key = content_hash(images)
        if self._sampled is None or self._sampled[0] != key:
            self._sampled = (key, self._extract(images))
        return self._sampled[1]

    def score(self, images01: Tensor) -> float:
        """FID(images01, test split)."""
        samples = fid_features_to_statistics(self.features(images01)[self.extractor.layer])
        return fid_statistics_to_metric(samples, self._statistics("test"), False)["frechet_inception_distance"]

    def label_accuracy(self, images01: Tensor, labels: Tensor) -> float | None:
        """The fraction of ``images01`` the classifier extractor assigns to their ``labels``
        (None under Inception, which knows no data-set labels)."""
        if self.extractor.name != EXTRACTOR:
            return None
        predicted = self.features(images01)["logits"].argmax(1)
        return (predicted == labels.cpu()).float().mean().item()

    @cached_property
    def floor(self) -> float:
        """FID(train split, test split): what 'as good as the data' scores."""
        return fid_statistics_to_metric(self._statistics("train"), self._statistics("test"),
                                        False)["frechet_inception_distance"]


EXTRACTORS = ("auto", "inception", "classifier")


def fetch_inception() -> Path:
    """torch-fidelity downloads Inception's weights into torch's hub cache (needs a network)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        FeatureExtractorInceptionV3(INCEPTION, ["2048"])
    except Exception as exc:  # no network, a proxy, a full disk: say so in one line
        raise UsageError(f"--download could not fetch Inception's weights ({type(exc).__name__}: {exc}); "
                         f"give --inception-weights PATH or --fid-extractor classifier") from None
    return inception_weights(None)


def protocol_for(data: Dataset, cache_dir: Path, inception: Path | None = None, *, choice: str = "auto",
                 download: bool = False, device: torch.device | str = "cpu", progress: bool = False
                 ) -> FIDProtocol | str:
    """The FID protocol for ``data``. ``choice`` ``auto``: Inception when its weights are here
    (or fetched with ``download``), else a classifier trained on the data's labels (on
    ``device``, cached); ``inception`` or ``classifier`` insist. Without either, a note saying
    why there is no FID."""
    began = time.perf_counter()
    weights = inception_weights(inception) if choice != "classifier" else None
    if weights is None and choice != "classifier" and download:
        weights = fetch_inception()
    if weights is None and choice == "inception":
        raise UsageError(f"--fid-extractor inception: no Inception weights found; give --inception-weights PATH "
                         f"({INCEPTION_FILE}), or --download on a machine with a network")
    if weights is not None:
        extractor = Extractor(INCEPTION, "2048", weights, file_hash(weights))
    elif data.train_labels is not None:
        path = cached_classifier(data, cache_dir, device, progress)
        test = as_uint8(data.to_model(data.test, train=False))
        extractor = Extractor(EXTRACTOR, "penultimate", path, weights_hash(path),
                              accuracy=accuracy(load_classifier(path), test, data.test_labels))
    else:
        return (f"no FID: {data.spec.name} has no labels to train a feature extractor on and no Inception "
                f"weights were found; give --inception-weights PATH ({INCEPTION_FILE})")
    extractor.seconds = time.perf_counter() - began
    return FIDProtocol(data, extractor, Path(cache_dir))
