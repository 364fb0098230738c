"""The faster forms behind evaluation at 28x28 (issue 28) against the forms they replace: the
nearest 2x upsampling and 3x3 convolution done on the small map, the conv decoder in blocks of
rows, and the discretized logistic with each log-sigmoid computed once."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import vaereg_gaussian.decoders as decoders
from vaereg import Context, DataSpec, continuous, discrete
from vaereg.combo import resolve
from vaereg.data import Dataset
from vaereg.model import VAE
from vaereg_gaussian.decoders import ConvDecoder, DecoderConfig
from vaereg_gaussian.likelihoods import DiscretizedLogistic, LogisticMixtureConfig
from vaereg_gaussian.upsampling import nearest2x_conv3x3
from vaereg_harness.metrics.passes import evaluation_pass

MNIST = DataSpec("mnist", 1, 28, 28, 256)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


def upsample_then_conv(x, weight, bias):
    """The reference: every pixel repeated twice along rows and columns, then a zero-padded
    3x3 convolution written as a sum of nine shifted products, in float64."""
    up = x.double().repeat_interleave(2, 2).repeat_interleave(2, 3)
    padded = F.pad(up, (1, 1, 1, 1))
    h, w = up.shape[-2:]
    out = sum(torch.einsum("nihw,oi->nohw", padded[:, :, a:a + h, b:b + w], weight.double()[:, :, a, b])
              for a in range(3) for b in range(3))
    return out if bias is None else out + bias.double().view(1, -1, 1, 1)


@pytest.mark.parametrize(("size", "bias"), [((7, 7), True), ((4, 5), False), ((1, 3), True)])
def test_nearest2x_conv_equals_upsampling_then_convolution(size, bias):
    x = torch.randn(3, 5, *size)
    weight, b = torch.randn(6, 5, 3, 3), torch.randn(6) if bias else None
    out = nearest2x_conv3x3(x, weight, b)
    assert out.shape == (3, 6, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(out.double(), upsample_then_conv(x, weight, b), rtol=1e-5, atol=1e-5)


def test_nearest2x_conv_gradients_equal_the_references():
    x, weight, b = (torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in ((2, 4, 5, 6), (3, 4, 3, 3),
                                                                                        (3,)))
    probe = torch.randn(2, 3, 10, 12, dtype=torch.float64)
    fast = torch.autograd.grad((nearest2x_conv3x3(x, weight, b) * probe).sum(), (x, weight, b))
    slow = torch.autograd.grad((upsample_then_conv(x, weight, b) * probe).sum(), (x, weight, b))
    for got, want in zip(fast, slow, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("latent", [continuous(16), discrete(32, 8, 7, 7)])
def test_conv_decoder_equals_its_layers_in_any_blocks(latent, monkeypatch):
    """The decoder's forward (the fused form; without autograd in blocks of rows) against its
    modules run one after another, the upsamplings as nn.Upsample: same weights, same values and,
    with autograd, the same gradients."""
    decoder = ConvDecoder(MNIST, latent, DecoderConfig(width=8), out_channels=6)
    z = torch.randn(37, *((latent.embed_dim, 7, 7) if latent.kind == "discrete" else latent.shape))
    want = decoder.net(decoder.condition(decoder.stem(z), Context()))
    got = decoder(z, Context())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    weights = list(decoder.parameters())
    cotangent = torch.randn_like(want)
    fused, plain = torch.autograd.grad(got, weights, cotangent), torch.autograd.grad(want, weights, cotangent)
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())  # float32 sums in two orders
    with torch.no_grad():
        torch.testing.assert_close(decoder(z, Context()), want.detach(), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(decoders, "CACHE_BYTES", 5 * decoder.widest * 4)  # blocks of 5 rows and one of 2
    with torch.no_grad():
        torch.testing.assert_close(decoder(z, Context()), want.detach(), rtol=1e-5, atol=1e-6)


def discretized_logistic_reference(x, params, mixtures, intensities):
    """log P(x) per image straight from the CDF differences in float64: bin k of L has edges
    (2k -/+ 1)/(L-1) - 1, the first and last open to -inf and +inf."""
    n, _, h, w = params.shape
    logits, means, log_scales = params.double().view(n, 3, 1, mixtures, h, w).unbind(1)
    scale = log_scales.clamp(min=-7.0).exp()
    k = torch.round(x.double() * (intensities - 1)).unsqueeze(2)
    upper = torch.where(k == intensities - 1, math.inf, (2 * k + 1) / (intensities - 1) - 1)
    lower = torch.where(k == 0, -math.inf, (2 * k - 1) / (intensities - 1) - 1)
    mass = torch.sigmoid((upper - means) / scale) - torch.sigmoid((lower - means) / scale)
    per_pixel = (logits.softmax(2) * mass).sum(2)
    return per_pixel.log().flatten(1).sum(1)


def test_discretized_logistic_equals_the_cdf_differences():
    mixtures, intensities = 3, 256
    likelihood = DiscretizedLogistic(MNIST, continuous(4), LogisticMixtureConfig(mixtures=mixtures))
    k = torch.randint(0, intensities, (4, 1, 28, 28))
    k[0, 0, 0, :3], k[1, 0, 0, :3] = 0, intensities - 1  # the open edge bins
    x = k / (intensities - 1)
    params = torch.randn(4, 3 * mixtures, 28, 28) * 0.5
    got = likelihood.log_prob(x, params, Context())
    torch.testing.assert_close(got.double(), discretized_logistic_reference(x, params, mixtures, intensities),
                               rtol=1e-5, atol=1e-3)


def test_nll_does_not_depend_on_the_decoders_blocks(monkeypatch):
    """The importance-sampled NLL with the conv decoder's rows in blocks of 3 equals the one
    with every row of a pass at once: the draws are the passes', the blocks only split the work."""
    torch.manual_seed(0)
    model = VAE(resolve("gaussian", MNIST, {"encoder": {"width": 8}, "decoder": {"width": 8}}))
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    data = Dataset(MNIST, images, images)
    whole = evaluation_pass(model, data, 20, 8, progress=False, seed=3)
    monkeypatch.setattr(decoders, "CACHE_BYTES", 3 * model.decoder.widest * 4)
    blocks = evaluation_pass(model, data, 20, 8, progress=False, seed=3)
    torch.testing.assert_close(blocks.nll, whole.nll, rtol=0, atol=1e-6 * whole.nll.abs().max().item())


def test_log_sigmoid_and_one_minus_exp_equal_float64_references_with_their_gradients():
    """The vectorised forms against torch's float64 logsigmoid and expm1: values to float32's
    precision everywhere (far tails, d -> 0 where 1 - e^d is tiny), gradients likewise."""
    from vaereg_gaussian.likelihoods import log_sigmoid, one_minus_exp

    x = torch.cat([torch.linspace(-3000, 3000, 20001), torch.randn(20000) * 5, torch.tensor([0.0, -80.0, 80.0])])
    x.requires_grad_(True)
    log_sigmoid(x).sum().backward()
    exact = x.detach().double()
    assert torch.allclose(log_sigmoid(x.detach()).double(), F.logsigmoid(exact), rtol=1e-6, atol=1e-6)
    assert torch.allclose(x.grad.double(), torch.sigmoid(-exact), rtol=1e-5, atol=1e-7)

    # down to -200: a coarse scale (17 intensities, log-scale -7) puts a bin's width at e^7 / 8
    d = torch.cat([-torch.logspace(-7, 2.3, 5000), torch.tensor([-1.0, -0.999999])]).requires_grad_(True)
    torch.log(one_minus_exp(d)).sum().backward()
    exact = d.detach().double()
    reference = torch.log(-torch.expm1(exact))
    assert torch.allclose(torch.log(one_minus_exp(d.detach())).double(), reference, rtol=0, atol=2e-6)
    assert torch.allclose(d.grad.double(), -torch.exp(exact) / -torch.expm1(exact), rtol=2e-5)
