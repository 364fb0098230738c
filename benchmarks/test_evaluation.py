"""NLL evaluation: batched over images and samples against a per-image loop and against the
decoder's forward pass alone (the floor), and its memory at K=5000 against K=100."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.conftest import report
from vaereg.combo import resolve
from vaereg.model import VAE
from vaereg.objectives import importance_nll
from vaereg_harness.evaluate import images_per_pass

K, CHUNK = 1000, 128


@pytest.fixture(scope="module")
def model(digits):
    return VAE(resolve("gaussian", digits.spec)).eval()


def test_nll_batched_against_per_image_loop_and_decoder_floor(benchmark, digits, short, model):
    """The harness's evaluation loop against scoring one image at a time (as peer libraries
    do), and against the decoder alone over the same samples and passes."""
    x = digits.to_model(digits.test[: 16 if short else 64], train=False)
    batch = images_per_pass(torch.device("cpu"), CHUNK)
    per_image: list[float] = []

    def setup():  # untimed by pytest-benchmark: the per-image loop, timed here
        began = time.perf_counter()
        for i in range(x.shape[0]):
            importance_nll(model, x[i:i + 1], K, CHUNK)
        per_image.append(time.perf_counter() - began)
        return (), {}

    def batched():
        for i in range(0, x.shape[0], batch):
            importance_nll(model, x[i:i + batch], K, CHUNK)

    benchmark.pedantic(batched, setup=setup, rounds=3, iterations=1)

    floor = []
    with torch.no_grad():
        for _ in range(3):
            began = time.perf_counter()
            for i in range(0, x.shape[0], batch):
                posterior = model.encoder(x[i:i + batch])
                for start in range(0, K, CHUNK):
                    model.decoder(posterior.rsample(min(CHUNK, K - start)).flatten(0, 1))
            floor.append(time.perf_counter() - began)
    best = benchmark.stats.stats.min
    report(benchmark, x.shape[0], per_image_over_batched=min(per_image) / best,
           nll_over_decoder_forward=best / min(floor), samples_per_s=x.shape[0] * K / best)


def _peak_rss_growth(fn) -> int:
    """Peak resident memory above the level before ``fn``, in kB (Linux: VmHWM reset by
    writing 5 to /proc/self/clear_refs)."""
    status = Path("/proc/self/status")

    def field(name: str) -> int:
        line = next(ln for ln in status.read_text().splitlines() if ln.startswith(name))
        return int(line.split()[1])

    Path("/proc/self/clear_refs").write_text("5")
    before = field("VmRSS:")
    fn()
    return field("VmHWM:") - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_nll_memory_is_bounded_in_k(benchmark, digits, model):
    """At a fixed number of images per pass (64, as on a GPU, so the signal stands above the
    allocator's noise) memory holds one chunk of samples at a time, whatever K is."""
    x = digits.to_model(digits.test[:64], train=False)
    small = _peak_rss_growth(lambda: importance_nll(model, x, 100, CHUNK))
    large = _peak_rss_growth(lambda: importance_nll(model, x, 5000, CHUNK))
    benchmark.pedantic(lambda: importance_nll(model, x, 100, CHUNK), rounds=1, iterations=1)
    report(benchmark, x.shape[0], peak_kb_k100=small, peak_kb_k5000=large, k5000_over_k100=large / max(small, 1))
    assert large <= 1.5 * small, (small, large)
