"""PixelCNN sampling: the cached sampler against naive full recomputation, in one run. The
ratio naive/fast is printed and stored in extra_info."""

import pytest
import torch

from vaereg import DataSpec, discrete
from vaereg_pixelcnn.parts import PixelCNNConfig, PixelCNNPrior

N, SHAPE = 64, (8, 8)
# CI fails below this: half of the lowest expected ratio (37 measured on one thread for issue 28; the naive
# passes may run up to 2x faster on two idle threads, while the cached sampler always runs on one)
FAST_OVER_NAIVE_BOUND = 10.0
_seconds: dict[str, float] = {}


@pytest.fixture(scope="module")
def prior():
    torch.manual_seed(0)
    return PixelCNNPrior(DataSpec("codes", 1, 8, 8, 2), discrete(64, 8, *SHAPE), PixelCNNConfig())


@pytest.mark.parametrize("fast", [False, True], ids=["naive", "fast"])
def test_pixelcnn_sampling(benchmark, prior, fast):
    result = benchmark.pedantic(lambda: prior.nets[0].sample(N, *SHAPE, fast=fast), rounds=3, iterations=1)
    assert result.shape == (N, 1, *SHAPE)
    _seconds["fast" if fast else "naive"] = benchmark.stats.stats.min
    benchmark.extra_info["images_per_s"] = N / benchmark.stats.stats.min
    if len(_seconds) == 2:
        ratio = _seconds["naive"] / _seconds["fast"]
        benchmark.extra_info["naive_over_fast"] = ratio
        print(f"\nPixelCNN {SHAPE[0]}x{SHAPE[1]} sampling, naive/fast time ratio: {ratio:.2f}")
        assert ratio >= FAST_OVER_NAIVE_BOUND, f"fast sampler only {ratio:.2f}x naive (bound {FAST_OVER_NAIVE_BOUND})"


def test_fast_and_naive_agree(prior):
    torch.manual_seed(5)
    fast = prior.nets[0].sample(4, *SHAPE, fast=True)
    torch.manual_seed(5)
    assert torch.equal(fast, prior.nets[0].sample(4, *SHAPE, fast=False))
