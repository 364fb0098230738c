"""The one model module: KL by dispatch with a Monte-Carlo fallback, objective options that
cannot apply refused, and one training step under DistributedDataParallel."""

import copy
import dataclasses
import math

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tests.conftest import vaereg_cli
from vaereg import Context, DataSpec, DiagonalGaussian, StandardNormal, UsageError
from vaereg.combo import resolve
from vaereg.gaussian import diagonal_to_standard_kl
from vaereg.kl import KLTable
from vaereg.model import VAE, Batch
from vaereg.objectives import build_objective, kl_per_image

DIGITS = DataSpec("digits", 1, 8, 8, 17)


def batch(n: int = 6) -> Batch:
    return Batch(torch.randint(0, 17, (n, 1, 8, 8)).float() / 16)


def test_a_registered_pair_gives_the_closed_form_kl():
    model = VAE(resolve("gaussian", DIGITS))
    posterior = model.encode(batch())
    terms = model.terms(batch(), posterior, 1)
    assert type(posterior) is DiagonalGaussian and model.combo.closed_form_kl
    assert torch.equal(terms.kl, diagonal_to_standard_kl(posterior, model.prior))


def test_without_a_pair_the_kl_is_monte_carlo_and_matches_the_closed_form_within_its_error():
    combo = resolve("gaussian", DIGITS)
    model = VAE(dataclasses.replace(combo, kl=KLTable())).eval()  # no pair registered
    x = batch(1)
    posterior = model.encode(x)
    terms = model.terms(x, posterior, 20000)
    assert terms.kl is None and not model.combo.closed_form_kl
    assert torch.equal(kl_per_image(terms), (terms.log_qz - terms.log_pz)[0])
    draws = (terms.log_qz - terms.log_pz)[:, 0].double()
    closed = diagonal_to_standard_kl(posterior, model.prior).sum().item()
    assert abs(draws.mean().item() - closed) < 4 * draws.std().item() / math.sqrt(draws.shape[0])


def test_pairs_match_exact_types_so_a_subclass_never_inherits_a_wrong_kl():
    class Flowed(DiagonalGaussian):  # a flow on a Gaussian: no longer Gaussian
        pass

    table = KLTable()
    table.register(DiagonalGaussian, StandardNormal, diagonal_to_standard_kl, plugin="test")
    prior = StandardNormal(DIGITS, resolve("gaussian", DIGITS).latent, None)
    q = torch.zeros(2, 16), torch.zeros(2, 16)
    assert table(DiagonalGaussian(*q), prior) is not None and table(Flowed(*q), prior) is None


def test_free_bits_and_kl_balance_need_a_closed_form_kl():
    with pytest.raises(UsageError, match=r"objective.free_bits needs a closed-form KL"):
        resolve("vq", DIGITS, {"objective": {"free_bits": 0.1}})
    with pytest.raises(UsageError, match=r"objective.kl_balance needs a closed-form KL"):
        resolve("vq", DIGITS, {"objective": {"kl_balance": True}})
    with pytest.raises(UsageError, match=r"free_bits and kl_balance both"):
        resolve("gaussian", DIGITS, {"objective": {"free_bits": 0.1, "kl_balance": True}})
    assert resolve("gaussian", DIGITS, {"objective": {"free_bits": 0.1}}).configs["objective"].free_bits == 0.1


def test_free_bits_without_a_closed_form_kl_exits_2_before_training(tmp_path):
    proc = vaereg_cli("eval", "--combo", "vq", "--set", "objective.free_bits=0.1", cwd=tmp_path, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "closed-form KL" in errors[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "vaereg-runs").exists()


@pytest.fixture
def gloo_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("text", ["gaussian", "vq", "hierarchical"])
def test_one_step_under_ddp_gives_the_same_loss_and_gradients(gloo_group, text):
    model = VAE(resolve(text, DIGITS)).train()
    wrapped = DistributedDataParallel(copy.deepcopy(model))
    x, objective = batch(8), build_objective(model.combo)
    results = []
    for module in (model, wrapped):
        torch.manual_seed(1)
        loss, _ = objective.loss(module(x, 1), 0.5)
        loss.backward()
        results.append((loss.detach(), [p.grad for p in module.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.allclose(loss_a, loss_b)
    assert len(grads_a) == len(grads_b) and all(
        torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_a, grads_b, strict=True))


def test_the_context_is_repeated_draw_major_like_the_draws():
    context = Context(label=torch.tensor([3, 7]))
    assert context.repeat(3).label.tolist() == [3, 7, 3, 7, 3, 7]
