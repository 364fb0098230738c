"""FID feature extraction throughput: the offline classifier extractor on uint8 images."""

from __future__ import annotations

import torch

from benchmarks.conftest import report
from vaereg_harness.metrics.classifier import Classifier, ClassifierConfig


def test_classifier_feature_extraction(benchmark, digits, short):
    net = Classifier(ClassifierConfig(channels=1, classes=10)).eval()  # speed does not depend on weights
    n = 500 if short else 2000
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8)

    def extract():
        with torch.no_grad():
            for batch in images.split(256):  # torch-fidelity's batch size in vaereg
                net(batch)

    benchmark.pedantic(extract, rounds=5, warmup_rounds=1, iterations=1)
    report(benchmark, n)
