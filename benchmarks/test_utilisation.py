"""Issue 28 in CI: the harness's training against the plain loop of vaereg's core
(``benchmarks/plain.py``) at 28x28, each side in fresh processes, alternating rounds, the
fastest of each compared with a loose bound; and the FLOP counting behind the utilisation table
checked against hand counts. Absolute figures never gate."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.peak import Layer, flops
from benchmarks.plain import RegistryCount, count_flops
from benchmarks.test_fresh_process import show
from benchmarks.utilisation import FULL, SHORT, fastest, harness, plain, write_idx_set
from vaereg.combo import resolve
from vaereg.data import Dataset
from vaereg.model import VAE, Batch
from vaereg.objectives import build_objective
from vaereg.specs import DataSpec

# CI fails below this; the target is 0.95 (benchmarks/RESULTS.md). Looser for the noise of a
# shared 2-core machine, where single rounds move by 20% and more.
HARNESS_OVER_PLAIN_MIN = 0.75


@pytest.fixture(scope="module")
def idx(tmp_path_factory, short):
    return write_idx_set(tmp_path_factory.mktemp("idx28"), SHORT if short else FULL)


@pytest.mark.parametrize("combo", ["gaussian", "vq+pixelcnn"])
def test_training_against_the_plain_core_loop(short, idx, combo):
    rounds = 3
    runs = {"harness": [], "plain": []}
    for r in range(rounds):
        for side in ("harness", "plain") if r % 2 == 0 else ("plain", "harness"):
            result = harness(combo, idx, 1, None) if side == "harness" else plain(combo, idx, 1, None, flops=False)
            assert "error" not in result, result.get("error")
            runs[side].append(result)
    h, p = fastest(runs["harness"], "seconds"), fastest(runs["plain"], "seconds")
    assert h["stages"].keys() == p["stages"].keys()  # the same stages on both sides
    ratio = p["seconds"] / h["seconds"]  # harness throughput / plain throughput, the whole training call
    show(f"training {combo} at 28x28", harness_over_plain=ratio, harness_s=h["seconds"], plain_s=p["seconds"])
    assert ratio >= HARNESS_OVER_PLAIN_MIN, f"harness/plain training throughput {ratio:.2f} < {HARNESS_OVER_PLAIN_MIN}"


def test_peak_counts_match_hand_counts():
    """A matmul of (rows, in) by (in, out) is 2*rows*in*out FLOPs; a conv, 2*N*O*Ho*Wo*C*kh*kw."""
    assert flops(Layer("linear", (64, 512), (32, 512)).call(torch.float32, torch.device("cpu"))) == 2 * 64 * 512 * 32
    conv = Layer("conv2d", (2, 3, 8, 8), (5, 3, 3, 3), stride=(2, 2), padding=(1, 1))
    assert flops(conv.call(torch.float32, torch.device("cpu"))) == 2 * 2 * 5 * 4 * 4 * 3 * 3 * 3


def test_mlp_family_flops_match_a_hand_count():
    """``gaussian-mlp`` at 28x28: only Linear layers do dense work. Forward per image is
    2*in*out summed over the layers; a training step adds the backward's two products per layer
    (input and weight gradients) except the input gradient of the first layer, whose input (the
    image) needs none. The IS NLL encodes each image once and decodes every draw."""
    spec = DataSpec("mnist", 1, 28, 28, 256)
    torch.manual_seed(0)
    combo = resolve("gaussian-mlp", spec)
    model, objective = VAE(combo), build_objective(combo)
    hidden, latent, out = 512, 16, 15 * 28 * 28  # width*8; latent_dim; 3 x 5 logistic mixtures per pixel
    encoder = [(784, hidden), (hidden, hidden), (hidden, 2 * latent)]
    decoder = [(latent, hidden), (hidden, hidden), (hidden, out)]
    forward = {name: sum(2 * i * o for i, o in layers) for name, layers in (("enc", encoder), ("dec", decoder))}
    train = 3 * (forward["enc"] + forward["dec"]) - 2 * 784 * hidden
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    k = 10
    counts = count_flops(model, objective, Dataset(spec, images, images), 4, k)
    assert counts["train"] == train
    assert counts["nll"] == pytest.approx((2 * forward["enc"] + 2 * k * forward["dec"]) / (2 * k), rel=1e-12)


def test_the_fallback_count_agrees_with_flop_counter_mode():
    """``RegistryCount`` (used where FlopCounterMode's module tracker fails) counts as it does."""
    torch.manual_seed(0)
    model = VAE(resolve("gaussian", DataSpec("mnist", 1, 28, 28, 256)))
    x = torch.rand(3, 1, 28, 28)

    def step():
        model(Batch(x)).log_px.sum().backward()

    with FlopCounterMode(display=False) as reference:
        step()
    with RegistryCount() as fallback:
        step()
    assert fallback.total == reference.get_total_flops() > 0
