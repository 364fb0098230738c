"""The gated PixelCNN: causality of the whole network (both roles, several depths), exact
normalisation over every grid, and the cached sampler against naive recomputation: each cached
step's logits against the full map's, and whole samples (conditioned, class-conditional,
several levels, square and not, kernel 3 and 5)."""

import itertools
import math

import pytest
import torch

from vaereg import Context, DataSpec, continuous, discrete
from vaereg.specs import hierarchy
from vaereg_pixelcnn.cached import CachedSampler
from vaereg_pixelcnn.parts import PixelCNNConfig, PixelCNNLikelihood, PixelCNNLikelihoodConfig, PixelCNNPrior

NONE = Context()


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread: the samplers' many small kernels."""


def prior(layers: int, codes: int = 5, shape=(5, 6), classes: int = 0, kernel: int = 3) -> PixelCNNPrior:
    data = DataSpec("d", 1, 8, 8, 17, classes)
    return PixelCNNPrior(data, discrete(codes, 4, *shape), PixelCNNConfig(width=32, layers=layers, kernel=kernel))


def likelihood(layers: int, channels: int = 2, intensities: int = 4, size=(5, 6),
               kernel: int = 3) -> PixelCNNLikelihood:
    data = DataSpec("d", channels, *size, intensities)
    config = PixelCNNLikelihoodConfig(width=32, layers=layers, features=3, kernel=kernel)
    return PixelCNNLikelihood(data, continuous(3), config)


def dependency(net, height: int, width: int, cond_channels: int) -> torch.Tensor:
    """``[P, P]``: entry (p, q) is True when the logits at raster position p have a nonzero
    gradient with respect to the input at raster position q."""
    torch.manual_seed(0)
    e = torch.randn(1, net.embed.weight.shape[1], height, width, requires_grad=True)
    cond = torch.randn(1, cond_channels, height, width) if cond_channels else None
    logits = net.trunk(e, cond)
    rows = []
    for p in range(height * width):
        (grad,) = torch.autograd.grad(logits[..., p // width, p % width].sum(), e, retain_graph=True)
        rows.append(grad.abs().sum(1).flatten() != 0)
    return torch.stack(rows)


@pytest.mark.parametrize("layers", [1, 2, 5])
@pytest.mark.parametrize("role", ["prior", "likelihood"])
def test_output_never_depends_on_its_own_or_later_positions(role, layers):
    net = prior(layers).nets[0] if role == "prior" else likelihood(layers).net
    deps = dependency(net, 5, 6, 0 if role == "prior" else 3)
    positions = deps.shape[0]
    at_or_after = torch.ones(positions, positions).triu().bool()
    assert not deps[at_or_after].any()
    assert deps[positions - 1, positions - 2] and deps[positions - 1, positions - 1 - 6]  # left and above
    assert deps.any(1)[1:].all()  # every position but the first sees something


def test_deep_enough_network_has_no_blind_spot():
    deps = dependency(prior(6).nets[0], 4, 4, 0)
    last = deps[-1]
    assert last[:-1].all()  # the last position sees every earlier one, top-right corner included


def test_prior_probabilities_sum_to_one_over_every_code_map():
    model = prior(layers=3, codes=3, shape=(2, 2))
    grids = torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 2, 2)
    total = model.log_prob(grids, NONE).exp().sum()
    assert abs(total.item() - 1) < 1e-5
    logits = model.nets[0](grids[:5].unsqueeze(1))
    assert torch.allclose(logits.softmax(2).sum(2), torch.ones(5, 1, 2, 2))


def test_likelihood_sums_to_one_over_every_image_given_features():
    lik = likelihood(layers=2, channels=2, intensities=3, size=(1, 2))
    images = torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 2, 1, 2).float() / 2
    features = torch.randn(1, 3, 1, 2).expand(images.shape[0], -1, -1, -1)
    total = lik.log_prob(images, features, NONE).exp().sum()
    assert abs(total.item() - 1) < 1e-5


@pytest.mark.parametrize("role", ["prior", "likelihood"])
def test_fast_sample_equals_naive_recomputation(role):
    net = prior(layers=4, codes=7).nets[0] if role == "prior" else likelihood(layers=4, intensities=5).net
    cond = None if role == "prior" else torch.randn(6, 3, 5, 6)
    torch.manual_seed(11)
    fast = net.sample(6, 5, 6, cond, fast=True)
    torch.manual_seed(11)
    naive = net.sample(6, 5, 6, cond, fast=False)
    assert torch.equal(fast, naive)
    assert fast.unique().numel() > 2  # a real sample, not a constant grid


def test_fitted_prior_samples_follow_its_distribution():
    """A 1x2 map: draw many samples, compare the empirical distribution with exp(log_prob)."""
    model = prior(layers=2, codes=2, shape=(1, 2))
    torch.manual_seed(3)
    draws = model.sample(20000, NONE)
    grids = torch.tensor([[[0, 0]], [[0, 1]], [[1, 0]], [[1, 1]]])
    expected = model.log_prob(grids, NONE).exp()
    counts = torch.stack([(draws == g).flatten(1).all(1).float().mean() for g in grids])
    assert torch.allclose(counts, expected, atol=0.02)
    assert math.isclose(expected.sum().item(), 1, abs_tol=1e-6)


def test_class_conditional_prior_is_normalised_per_class_and_depends_on_the_class():
    model = prior(layers=2, codes=3, shape=(2, 2), classes=4)
    grids = torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 2, 2)
    per_class = []
    for label in range(4):
        log_p = model.log_prob(grids, Context(label=torch.full((grids.shape[0],), label)))
        assert abs(torch.logsumexp(log_p, 0).item()) < 1e-5
        per_class.append(log_p)
    assert not torch.allclose(per_class[0], per_class[1])


def test_class_conditional_fast_sample_equals_naive_and_stays_causal():
    net = prior(layers=3, codes=6, classes=3).nets[0]
    label = torch.tensor([0, 1, 2, 0])
    torch.manual_seed(5)
    fast = net.sample(4, 5, 6, None, label, fast=True)
    torch.manual_seed(5)
    assert torch.equal(fast, net.sample(4, 5, 6, None, label, fast=False))
    e = torch.randn(1, net.embed.weight.shape[1], 3, 3, requires_grad=True)
    logits = net.trunk(e, None, torch.tensor([2]))
    (grad,) = torch.autograd.grad(logits[..., 1, 1].sum(), e)
    assert grad[..., 1, 1:].abs().sum() == 0 and grad[..., 2, :].abs().sum() == 0


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("role", ["prior", "likelihood"])
def test_each_cached_step_gives_the_full_maps_logits_at_its_position(role, kernel):
    """Place a fixed random grid position by position: the cached logits at every position equal
    the naive forward pass over the whole grid there (the likelihood: 2 channels and a feature
    map; the prior: a class label). In float64, so the tolerance is the logits' float32 rounding."""
    torch.manual_seed(2)
    height, width = 4, 7
    if role == "prior":
        net, values, cond, label = prior(3, codes=6, classes=3, kernel=kernel).nets[0], 6, None, torch.tensor([0, 2, 1])
    else:
        net, values, label = likelihood(3, intensities=5, kernel=kernel).net, 5, None
        cond = torch.randn(3, 3, height, width, dtype=torch.float64)
    net = net.double()
    for p in net.parameters():  # away from the initialisation, so every term of the gates matters
        p.data.add_(0.3 * torch.randn_like(p))
    x = torch.randint(0, values, (3, net.channels, height, width))
    with torch.no_grad():
        full = net(x, cond, label)
    with torch.inference_mode():
        cache = CachedSampler(net, 3, height, width, cond, label)
        for i in range(height):
            cache.row(i)
            for j in range(width):
                step = cache.logits(j)
                assert torch.allclose(step, full[..., i, j], atol=1e-5, rtol=1e-6), (i, j)
                cache.place(j, x[:, :, i, j])
    assert full.std() > 0.1  # logits that vary: the comparison is not between constants


@pytest.mark.parametrize("shape", [(7, 3), (1, 9), (9, 1)])
def test_fast_sample_equals_naive_on_narrow_maps_and_a_wide_kernel(shape):
    net = likelihood(layers=3, intensities=6, size=shape, kernel=5).net
    cond = torch.randn(5, 3, *shape)
    torch.manual_seed(4)
    fast = net.sample(5, *shape, cond, fast=True)
    torch.manual_seed(4)
    assert torch.equal(fast, net.sample(5, *shape, cond, fast=False))
    assert fast.unique().numel() > 2


def test_fast_sample_of_a_two_level_prior_equals_naive_level_by_level():
    """VQ-VAE-2's prior: the top level, then the lower one conditioned on it; the cached sampler
    (``PixelCNNPrior.sample``) against naive sampling of each level with the same noise."""
    latent = hierarchy(discrete(5, 4, 4, 6), discrete(3, 4, 2, 3))
    model = PixelCNNPrior(DataSpec("d", 1, 8, 8, 17), latent, PixelCNNConfig(width=32, layers=3))
    torch.manual_seed(6)
    fast = model.sample(4, NONE)
    torch.manual_seed(6)
    top = model.nets[1].sample(4, 2, 3, fast=False)[:, 0]
    bottom = model.nets[0].sample(4, 4, 6, model._condition(0, [None, top]), fast=False)[:, 0]
    assert torch.equal(fast, latent.join([bottom, top]))
    assert latent.split(fast)[0].unique().numel() > 2
