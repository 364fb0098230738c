"""The MS-SSIM reconstruction term: SSIM against a hand computation, a closed form and scipy's
Gaussian filter (and scikit-image where installed), MS-SSIM's scales and exponents against a
numpy reference and a closed form, the automatic choice of scales and window, and the likelihood
in a real model (resolved through a test-local registry, before the lead registers it)."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from vaereg import UsageError, continuous
from vaereg.combo import resolve
from vaereg.config import from_dict
from vaereg.context import Context
from vaereg.model import VAE, Batch
from vaereg.objectives import build_objective
from vaereg.registry import Entry, get_registry
from vaereg.specs import DataSpec
from vaereg_harness.run.trainer import update
from vaereg_zoo.msssim import EXPONENTS, MSSSIMConfig, MSSSIMLikelihood, choose, ms_ssim, ssim

C1, C2 = 0.01**2, 0.03**2


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


def smooth_images(n: int, side: int, seed: int = 0) -> np.ndarray:
    """``n`` smooth random images ``[n, 1, side, side]`` in [0, 1], float64."""
    rng = np.random.default_rng(seed)
    images = ndimage.gaussian_filter(rng.random((n, 1, side, side)), sigma=(0, 0, 2, 2))
    images -= images.min(axis=(2, 3), keepdims=True)
    return images / images.max(axis=(2, 3), keepdims=True)


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def reference_maps(x: np.ndarray, y: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Luminance and contrast-structure maps of 2-D float64 images from scipy's Gaussian filter
    (sigma 1.5, truncated to ``window`` taps), cropped to the valid positions (as skimage does)."""
    radius = window // 2

    def blur(a: np.ndarray) -> np.ndarray:
        out = ndimage.gaussian_filter(a, sigma=1.5, truncate=radius / 1.5, mode="reflect")
        return out[radius:out.shape[0] - radius, radius:out.shape[1] - radius]

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    return (2 * mx * my + C1) / (mx**2 + my**2 + C1), (2 * cov + C2) / (vx + vy + C2)


def reference_ms_ssim(x: np.ndarray, y: np.ndarray, scales: int, window: int) -> float:
    """Wang et al. 2003 eq. 7 on 2-D images with numpy 2x2 block means between scales."""
    weights = np.array(EXPONENTS[:scales]) / sum(EXPONENTS[:scales])
    score = 1.0
    for j in range(scales):
        lum, cs = reference_maps(x, y, window)
        score *= max((cs if j < scales - 1 else lum * cs).mean(), 1e-6) ** weights[j]
        h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
        x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return score


# ---- SSIM and MS-SSIM against exact references ----

def test_ssim_on_one_window_position_by_hand():
    # A 3x3 image and a 3x3 window: one position; weights exp(-r^2 / 4.5) normalised.
    x = [[0.1, 0.5, 0.9], [0.3, 0.7, 0.2], [0.8, 0.4, 0.6]]
    y = [[0.2, 0.4, 0.8], [0.3, 0.9, 0.1], [0.7, 0.5, 0.5]]
    raw = [[math.exp(-((i - 1) ** 2 + (j - 1) ** 2) / 4.5) for j in range(3)] for i in range(3)]
    total = sum(map(sum, raw))
    w = [[v / total for v in row] for row in raw]

    def weighted(f):
        return sum(w[i][j] * f(i, j) for i in range(3) for j in range(3))

    mx, my = weighted(lambda i, j: x[i][j]), weighted(lambda i, j: y[i][j])
    vx = weighted(lambda i, j: (x[i][j] - mx) ** 2)
    vy = weighted(lambda i, j: (y[i][j] - my) ** 2)
    cov = weighted(lambda i, j: (x[i][j] - mx) * (y[i][j] - my))
    expected = (2 * mx * my + C1) * (2 * cov + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    got = ssim(torch.tensor([[x]], dtype=torch.float64), torch.tensor([[y]], dtype=torch.float64), window=3)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("a", "b"), [(0.2, 0.7), (0.5, 0.5), (0.0, 1.0)])
def test_ssim_of_constant_images_is_the_luminance_term(a, b):
    # No variance: contrast-structure is C2 / C2 = 1 and SSIM is (2ab + C1) / (a^2 + b^2 + C1).
    x, y = torch.full((1, 1, 12, 12), a, dtype=torch.float64), torch.full((1, 1, 12, 12), b, dtype=torch.float64)
    expected = (2 * a * b + C1) / (a * a + b * b + C1)
    assert ssim(x, y, window=11).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("side", "scales"), [(64, 3), (32, 2), (8, 1)])
def test_ms_ssim_of_constant_images_weighs_luminance_by_the_coarsest_exponent(side, scales):
    # Pooling keeps a constant image; every cs is 1, so MS-SSIM = l ^ (w_M / sum of the M exponents).
    a, b = 0.3, 0.6
    window = choose(side, side)[1]
    x, y = (torch.full((1, 1, side, side), v, dtype=torch.float64) for v in (a, b))
    weight = EXPONENTS[scales - 1] / sum(EXPONENTS[:scales])
    expected = ((2 * a * b + C1) / (a * a + b * b + C1)) ** weight
    assert ms_ssim(x, y, scales, window).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("side", "window"), [(20, 11), (16, 7), (9, 3)])
def test_ssim_matches_scipy_gaussian_filter(side, window):
    x, y = smooth_images(3, side, seed=1), smooth_images(3, side, seed=2)
    got = ssim(t(x), t(y), window=window)
    for i in range(3):
        lum, cs = reference_maps(x[i, 0], y[i, 0], window)
        assert got[i].item() == pytest.approx((lum * cs).mean(), rel=1e-10)


@pytest.mark.parametrize(("side", "scales", "window"), [(64, 3, 11), (33, 2, 11), (28, 2, 11), (48, 4, 5)])
def test_ms_ssim_matches_a_numpy_reference(side, scales, window):
    x = smooth_images(2, side, seed=3)
    y = np.clip(x + 0.1 * np.random.default_rng(4).standard_normal(x.shape), 0, 1)
    got = ms_ssim(t(x), t(y), scales, window)
    for i in range(2):
        assert got[i].item() == pytest.approx(reference_ms_ssim(x[i, 0], y[i, 0], scales, window), rel=1e-10)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    x, y = smooth_images(2, 24, seed=5), smooth_images(2, 24, seed=6)
    got = ssim(t(x), t(y), window=11)
    for i in range(2):
        expected = metrics.structural_similarity(x[i, 0], y[i, 0], gaussian_weights=True, sigma=1.5,
                                                 use_sample_covariance=False, data_range=1.0)
        assert got[i].item() == pytest.approx(expected, rel=1e-8)


def test_multichannel_ssim_is_the_mean_over_channels():
    x, y = t(smooth_images(3, 16, seed=7).reshape(1, 3, 16, 16)), t(smooth_images(3, 16, seed=8).reshape(1, 3, 16, 16))
    per_channel = [ssim(x[:, c:c + 1], y[:, c:c + 1], window=7) for c in range(3)]
    assert ssim(x, y, window=7).item() == pytest.approx(torch.cat(per_channel).mean().item(), rel=1e-12)


@pytest.mark.parametrize("side", [8, 28, 32, 64, 176])
def test_an_image_with_itself_scores_one(side):
    scales, window = choose(side, side)
    x = t(smooth_images(2, side, seed=9))
    assert torch.allclose(ssim(x, x, window), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.allclose(ms_ssim(x, x, scales, window), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("side", [8, 28, 64])
def test_more_noise_gives_lower_ms_ssim(side):
    scales, window = choose(side, side)
    x = smooth_images(4, side, seed=10)
    noise = np.random.default_rng(11).standard_normal(x.shape)
    scores = [ms_ssim(t(x), t(np.clip(x + s * noise, 0, 1)), scales, window) for s in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)]
    for before, after in zip(scores, scores[1:], strict=False):
        assert (after < before).all()


def test_negative_structure_is_clamped_not_nan():
    # y = 1 - x anti-correlates every window: cs < 0 at fine scales, so the factor is clamped.
    x = t(smooth_images(2, 32, seed=12)).requires_grad_()
    score = ms_ssim(x, 1 - x.detach(), 2, 11)
    assert torch.isfinite(score).all() and (score > 0).all()
    score.sum().backward()
    assert torch.isfinite(x.grad).all()


# ---- the choice of scales and window ----

@pytest.mark.parametrize(("side", "expected"), [(8, (1, 7)), (28, (2, 11)), (32, (2, 11)), (64, (3, 11)),
                                                (160, (4, 11)), (176, (5, 11)), (5, (1, 5)), (1, (1, 1))])
def test_automatic_choice(side, expected):
    # 160 px: the fifth scale would be 10 px, under the 11-px window; 176 = 11 * 2^4 is the least for 5.
    assert choose(side, side) == expected
    scales, window = expected
    assert side >> (scales - 1) >= window
    assert scales == 5 or side >> scales < window


def test_choice_follows_the_smaller_side_and_the_given_option():
    assert choose(64, 28) == choose(28, 28)
    assert choose(8, 8, scales=2) == (2, 3)  # the largest odd window in the 4-px coarsest image
    assert choose(8, 8, window=3) == (2, 3)
    assert choose(64, 64, scales=1) == (1, 11)
    assert choose(64, 64, window=5) == (4, 5)
    assert choose(8, 8, scales=3, window=5) == (3, 5)  # both given: kept, for mismatch to refuse


def spec(side: int, channels: int = 1) -> DataSpec:
    return DataSpec("toy", channels, side, side, 17)


@pytest.mark.parametrize(("side", "options", "words"), [
    (8, {"window": 11}, "11x11 window is larger than the 8px coarsest image of 1 scale"),
    (8, {"scales": 2, "window": 5}, "5x5 window is larger than the 4px coarsest image of 2 scale"),
    (8, {"scales": 5}, "1x1 window is larger than the 0px coarsest image of 5 scale"),
    (28, {"scales": 5}, None),  # a 1-px coarsest image holds a 1x1 window
    (8, {"scales": 2, "window": 3}, None),
])
def test_mismatch_refuses_a_window_larger_than_the_image(side, options, words):
    problem = MSSSIMLikelihood.mismatch(spec(side), continuous(4), MSSSIMConfig(**options))
    if words is None:
        assert problem is None
    else:
        assert words in problem and "\n" not in problem and "likelihood.window" in problem


def test_mismatch_accepts_every_automatic_choice():
    for side in (1, 2, 3, 8, 28, 32, 64, 160, 176, 256):
        assert MSSSIMLikelihood.mismatch(spec(side), continuous(4), MSSSIMConfig()) is None


def test_an_even_window_is_a_usage_error():
    with pytest.raises(UsageError, match="window=4 is even.*3 or 5"):
        from_dict(MSSSIMConfig, {"window": 4}, what="likelihood 'msssim'")
    with pytest.raises(UsageError, match="window=13"):
        from_dict(MSSSIMConfig, {"window": 13}, what="likelihood 'msssim'")


def test_not_a_density_names_the_choice():
    assert MSSSIMLikelihood.not_a_density(spec(8), MSSSIMConfig()) == (
        "MS-SSIM with 1 scale and window 7x7 (chosen for 8x8 images) is a reconstruction score, "
        "not a normalised density over pixel intensities")
    assert MSSSIMLikelihood.not_a_density(spec(28), MSSSIMConfig()).startswith(
        "MS-SSIM with 2 scales and window 11x11 (chosen for 28x28 images)")
    assert MSSSIMLikelihood.not_a_density(spec(8), MSSSIMConfig(scales=2)).startswith(
        "MS-SSIM with 2 scales and window 3x3 (set for 8x8 images)")


# ---- the likelihood ----

def test_likelihood_terms():
    data = spec(28, channels=3)
    likelihood = MSSSIMLikelihood(data, continuous(4), MSSSIMConfig())
    assert likelihood.param_channels() == 3
    params = torch.randn(5, 3, 28, 28)
    x = torch.rand(5, 3, 28, 28)
    mean = torch.sigmoid(params)
    assert torch.equal(likelihood.mean(params, Context()), mean)
    expected = -data.dims * (1 - ms_ssim(x, mean, 2, 11))
    assert torch.allclose(likelihood.log_prob(x, params, Context()), expected, rtol=1e-6, atol=0)
    weighted = MSSSIMLikelihood(data, continuous(4), MSSSIMConfig(scale=2.5))
    assert torch.allclose(weighted.log_prob(x, params, Context()), expected * 2.5 / data.dims, rtol=1e-6, atol=0)
    sample = likelihood.sample(params, Context())
    levels = sample * 16
    assert torch.equal(levels, levels.round()) and levels.min() >= 0 and levels.max() <= 16
    assert (sample - mean).abs().max() <= 0.5 / 16 + 1e-6


def test_log_prob_is_zero_with_finite_gradients_at_the_mean():
    likelihood = MSSSIMLikelihood(spec(28), continuous(4), MSSSIMConfig())
    x = torch.from_numpy(smooth_images(3, 28, seed=13)).float().clamp(0.02, 0.98)
    params = torch.logit(x).requires_grad_()
    log_px = likelihood.log_prob(x, params, Context())
    assert torch.allclose(log_px, torch.zeros(3), rtol=0, atol=1e-3)
    log_px.sum().backward()
    assert torch.isfinite(params.grad).all()


@pytest.fixture(scope="module")
def combo(digits):
    base = get_registry()
    registry = dataclasses.replace(base, entries={kind: dict(entries) for kind, entries in base.entries.items()})
    registry.entries["likelihood"]["msssim"] = Entry("likelihood", "msssim", MSSSIMLikelihood, "test", "0")
    return resolve("gaussian+likelihood=msssim", digits.spec, registry=registry)


def test_the_combo_has_no_density_and_says_why(combo):
    assert combo.no_density == MSSSIMLikelihood.not_a_density(combo.data, MSSSIMConfig())


def test_training_steps_raise_ms_ssim(combo, digits):
    torch.manual_seed(0)
    model = VAE(combo)
    objective = build_objective(combo)
    steps = objective.steps(model, list(model.parameters()))
    optimizers = [torch.optim.Adam(s.parameters, lr=3e-3) for s in steps]
    batch = Batch(digits.to_model(digits.train[:32], train=True))
    first = model(batch, 1).log_px.mean().item()
    assert -combo.data.dims <= first < 0
    for _ in range(30):
        stats = update(steps, optimizers, model(batch, objective.draws), 0.5)
        assert all(math.isfinite(v.item()) for v in stats.values())
    assert model(batch, 1).log_px.mean().item() > first
