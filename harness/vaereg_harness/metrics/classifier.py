"""A small classifier trained on a data set's own labels, whose penultimate layer serves as the
FID feature extractor where Inception weights are not available (an offline machine)."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from tqdm import tqdm

from vaereg_harness.data import Dataset, safe_name
from vaereg_harness.launch import threads
from vaereg_harness.store.files import atomic_write
from vaereg_harness.store.locks import file_lock

EXTRACTOR = "vaereg-classifier"
FEATURES = ("penultimate", "logits")


@dataclass
class ClassifierConfig:
    channels: int
    classes: int
    width: int = 64


class Classifier(nn.Module):
    """Three 3x3 convolutions (two strided), global average pooling to ``width`` features, a
    linear head. Input: uint8 images ``[N, C, H, W]`` as torch-fidelity passes them."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.features = nn.Sequential(
            nn.Conv2d(config.channels, w // 2, 3, padding=1), nn.BatchNorm2d(w // 2), nn.SiLU(),
            nn.Conv2d(w // 2, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.SiLU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(w, config.classes)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features(images.float() / 255)
        return f, self.head(f)


def content_hash(*tensors: Tensor | None) -> str:
    """SHA-256 over the shapes and bytes of ``tensors``: any changed value changes it."""
    digest = hashlib.sha256()
    for t in tensors:
        if t is not None:
            t = t.detach().cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def as_uint8(images01: Tensor) -> Tensor:
    """Images in [0, 1] as the uint8 ``[N, C, H, W]`` torch-fidelity reads."""
    return (images01.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


#: Optimiser steps of batch 64, whatever the data size: 30 epochs of the 1437 digits, under one
#: epoch of MNIST's 60000 images (about 2 minutes on 2 CPU cores at 28x28).
STEPS = 690


def train_classifier(images: Tensor, labels: Tensor, *, steps: int = STEPS, seed: int = 0,
                     device: torch.device | str = "cpu", progress: bool = False) -> Classifier:
    """Fit on uint8 ``images`` and ``labels`` with Adam for ``steps`` steps of batch 64 (epochs
    of shuffled batches, the last cut short), on ``device``; seeded apart from the caller's RNG."""
    config = ClassifierConfig(images.shape[1], int(labels.max()) + 1)
    images, labels = images.to(device), labels.to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Classifier(config).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
        net.train()
        bar = tqdm(total=steps, desc="FID classifier", disable=not progress, file=sys.stderr, leave=False,
                   unit="step")
        done = 0
        while done < steps:
            for idx in torch.randperm(images.shape[0]).split(64)[: steps - done]:
                idx = idx.to(device)
                loss = F.cross_entropy(net(images[idx])[1], labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                threads.tick()  # under --threads auto, give up the cores others keep busy
                done += 1
                bar.update()
        bar.close()
    return net.cpu().eval()


@torch.no_grad()
def accuracy(net: Classifier, images: Tensor, labels: Tensor) -> float:
    """The fraction of uint8 ``images`` that ``net`` assigns to their ``labels``."""
    hits = sum((net(chunk)[1].argmax(1) == y).sum().item()
               for chunk, y in zip(images.split(4096), labels.split(4096), strict=True))
    return hits / images.shape[0]


def cached_classifier(data: Dataset, cache_dir: Path, device: torch.device | str = "cpu",
                      progress: bool = False) -> Path:
    """The classifier for ``data``'s labelled training split, trained once (on ``device``) and
    stored under a key that includes the content hash of the images and labels; under a lock,
    so concurrent runs train it once."""
    train = as_uint8(data.to_model(data.train, train=False))
    key = content_hash(train, data.train_labels)[:16]
    path = Path(cache_dir) / "extractors" / f"{safe_name(data.spec.name)}-{key}.pt"
    # one process trains it; a concurrent run waits for the file rather than training it again
    with file_lock(path.with_suffix(".lock"), f"training the FID classifier for {data.spec.name}"):
        if not path.is_file():
            net = train_classifier(train, data.train_labels, device=device, progress=progress)
            atomic_write(path, lambda tmp: torch.save({"config": asdict(net.config), "state": net.state_dict()}, tmp))
    return path


def weights_hash(path: Path) -> str:
    """Hash of the classifier's weights themselves (the file's bytes also hold its name)."""
    state = load_classifier(path).state_dict()
    return content_hash(*(state[k] for k in sorted(state)))


def load_classifier(path: Path) -> Classifier:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    net = Classifier(ClassifierConfig(**payload["config"]))
    net.load_state_dict(payload["state"])
    return net.eval()


class ClassifierFeatures(FeatureExtractorBase):
    """The classifier as a torch-fidelity feature extractor; its weights come from
    ``feature_extractor_weights_path``."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"{EXTRACTOR} needs feature_extractor_weights_path")
        self.net = load_classifier(Path(feature_extractor_weights_path))

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "penultimate"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> None:
        return None

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        provided = dict(zip(FEATURES, self.net(images), strict=True))
        return tuple(provided[name] for name in self.features_list)
