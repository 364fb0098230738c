"""Vector quantization: the EMA update against a hand-computed example, dead-code restarts,
the uniform prior's N log K, and the NLL bound of a deterministic posterior."""

import math

import pytest
import torch

from vaereg import Context, DataSpec, UniformCodes, discrete
from vaereg.codes import Quantizer
from vaereg.combo import resolve
from vaereg.model import VAE, Batch
from vaereg.objectives import importance_nll


def quantizer(**kw) -> Quantizer:
    q = Quantizer(2, 2, ema=True, decay=kw.get("decay", 0.5), epsilon=kw.get("epsilon", 0.1),
                  restart_below=kw.get("restart_below", 0.0))
    q.codebook.copy_(torch.tensor([[0.0, 0.0], [4.0, 4.0]]))
    q.counts.copy_(torch.tensor([2.0, 2.0]))
    q.sums.copy_(torch.tensor([[0.0, 0.0], [8.0, 8.0]]))
    return q


def test_ema_update_matches_hand_computation():
    q = quantizer()
    flat = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 3.0]])
    codes = q.assign(flat)
    assert codes.tolist() == [0, 0, 1]
    q.update(flat, codes)
    # counts: 0.5 * [2, 2] + 0.5 * [2, 1] = [2, 1.5]; n = 3.5
    # sums:   0.5 * [[0, 0], [8, 8]] + 0.5 * [[1, 1], [5, 3]] = [[0.5, 0.5], [6.5, 5.5]]
    # Laplace: (n_k + 0.1) / (3.5 + 0.2) * 3.5 = [2.1, 1.6] * 3.5 / 3.7
    assert torch.allclose(q.counts, torch.tensor([2.0, 1.5]))
    smoothed = torch.tensor([2.1, 1.6]) * 3.5 / 3.7
    expected = torch.tensor([[0.5, 0.5], [6.5, 5.5]]) / smoothed.unsqueeze(1)
    assert torch.allclose(q.codebook, expected)


def test_dead_code_is_restarted_on_a_current_vector():
    q = quantizer(decay=0.9, restart_below=1.0)
    q.counts.copy_(torch.tensor([5.0, 1.05]))  # code 1 unused this step: 0.9 * 1.05 < 1
    flat = torch.tensor([[0.1, 0.2], [0.3, -0.1], [-0.2, 0.0]])
    q.update(flat, q.assign(flat))
    assert any(torch.equal(q.codebook[1], v) for v in flat)
    assert q.counts[1] == 1.0 and torch.equal(q.sums[1], q.codebook[1])


def test_uniform_prior_costs_n_log_k():
    prior = UniformCodes(None, discrete(32, 8, 3, 5), None)
    z = torch.randint(32, (4, 3, 5))
    assert torch.allclose(prior.log_prob(z, Context()), torch.full((4,), -15 * math.log(32)))


@pytest.fixture
def vq_model(digits):
    return VAE(resolve("vq", digits.spec, {"encoder": {"codes": 16, "width": 16}})).eval()


def test_vq_nll_is_reconstruction_plus_n_log_k(vq_model, digits):
    batch = Batch(digits.to_model(digits.test[:8], train=False))
    terms = vq_model(batch)
    h, w = vq_model.combo.latent.shape
    expected = -terms.log_px[0].double() + h * w * math.log(16)
    assert torch.allclose(importance_nll(vq_model, batch, k=50, chunk=7), expected)


def test_straight_through_gradient_reaches_the_encoder(vq_model, digits):
    vq_model.train()
    terms = vq_model(Batch(digits.to_model(digits.train[:8], train=True)))
    (-terms.log_px.mean() + terms.aux).backward()
    assert vq_model.encoder.trunk[0].weight.grad.abs().sum() > 0


def test_codebook_loss_variant_trains_the_codebook(digits):
    model = VAE(resolve("vq", digits.spec, {"encoder": {"ema": False, "width": 16}}))
    terms = model(Batch(digits.to_model(digits.train[:8], train=True)))
    (-terms.log_px.mean() + terms.aux).backward()
    assert model.encoder.quantizer.codebook.grad.abs().sum() > 0


def test_pixelcnn_fills_the_prior_over_codes_and_the_likelihood_over_a_continuous_latent():
    data = DataSpec("digits", 1, 8, 8, 17)
    assert resolve("vq+pixelcnn", data).canonical == "encoder=vq+decoder=conv+prior=pixelcnn+likelihood=dlogistic"
    assert resolve("gaussian+pixelcnn", data).parts["likelihood"].name == "pixelcnn"
    assert resolve("vq+pixelcnn", data).schedule == "gradient"
    assert resolve("vq+likelihood=pixelcnn", data).parts["likelihood"].name == "pixelcnn"  # any latent it serves
