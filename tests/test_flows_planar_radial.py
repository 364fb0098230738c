"""Planar and radial flow posteriors (Rezende & Mohamed 2015) against exact references: each
step's log-determinant against autograd's Jacobian, the invertibility constraints, log q of a
draw against an independent step-by-step computation, the flowed density integrating to one,
and the presets training and evaluating on digits."""

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from tests.conftest import vaereg_cli
from vaereg.combo import resolve
from vaereg.gaussian import normal_log_prob
from vaereg.model import VAE, Batch
from vaereg.objectives import build_objective
from vaereg_flows import planar, radial
from vaereg_flows.planar import PlanarPosterior
from vaereg_flows.radial import RadialPosterior
from vaereg_harness.run.trainer import update
from vaereg_harness.store.results import read_results

POSTERIORS = {"planar": PlanarPosterior, "radial": RadialPosterior}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


def jacobian_log_det(step, z: torch.Tensor) -> torch.Tensor:
    """log |det df/dz| per row of ``z`` ``[N, D]`` from autograd's Jacobian of ``step`` on one row,
    with the sign of det, which an invertible orientation-preserving step keeps positive."""
    rows = []
    for i in range(z.shape[0]):
        sign, log_abs = torch.linalg.slogdet(jacobian(lambda row, i=i: step(row[None], i)[0][0], z[i]))
        assert sign.item() == 1.0
        rows.append(log_abs)
    return torch.stack(rows)


def planar_params(n: int, d: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random (u, w, b), half the rows with w.u < -1: not invertible before the constraint."""
    u = torch.randn(n, d, generator=g, dtype=torch.float64) * 2
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    bad = torch.arange(n) % 2 == 0
    u[bad] = -(2 + 3 * torch.rand(int(bad.sum()), 1, generator=g, dtype=torch.float64)) * w[bad] / w[bad].square().sum(
        1, keepdim=True)
    assert ((w * u).sum(1)[bad] < -1).all()
    return u, w, b


@pytest.mark.parametrize("d", [2, 5])
def test_planar_log_det_equals_autograd_and_the_constraint_holds(d):
    g = torch.Generator().manual_seed(d)
    n = 8
    u, w, b = planar_params(n, d, g)
    z = torch.randn(n, d, generator=g, dtype=torch.float64) * 2
    u_hat, lifted = planar.constrain(u, w)
    assert ((w * u_hat).sum(1) >= -1).all()
    assert torch.allclose((w * u_hat).sum(1), lifted - 1, atol=1e-12)
    f, log_det = planar.planar_step(z, u, w, b)
    assert torch.allclose(f, z + u_hat * torch.tanh((w * z).sum(1) + b)[:, None], atol=1e-12)
    expected = jacobian_log_det(lambda row, i: planar.planar_step(row, u[i:i + 1], w[i:i + 1], b[i:i + 1]), z)
    assert torch.allclose(log_det, expected, atol=1e-10)


def test_planar_without_the_constraint_folds_space():
    """The constraint matters: with w.u < -1, at w.z + b = 0 the unconstrained step's Jacobian
    determinant 1 + w.u is negative."""
    w = torch.tensor([1.0, 2.0], dtype=torch.float64)
    u = -2 * w / w.square().sum()
    z = torch.tensor([0.6, -0.3], dtype=torch.float64)  # w.z = 0
    det = torch.linalg.det(jacobian(lambda z: z + u * torch.tanh(w @ z), z))
    assert det.item() == pytest.approx(1 + (w @ u).item()) and det.item() < 0
    _, log_det = planar.planar_step(z[None], u[None], w[None], torch.zeros(1, dtype=torch.float64))
    assert torch.isfinite(log_det).all()


@pytest.mark.parametrize("d", [2, 5])
def test_radial_log_det_equals_autograd_and_the_constraint_holds(d):
    g = torch.Generator().manual_seed(10 + d)
    n = 8
    z0 = torch.randn(n, d, generator=g, dtype=torch.float64)
    alpha = torch.randn(n, generator=g, dtype=torch.float64)
    # the raw beta of every other row is below -alpha: not invertible were it used as it is
    beta = torch.where(torch.arange(n) % 2 == 0, -torch.nn.functional.softplus(alpha) - 1 - torch.rand(n, generator=g),
                       3 * torch.randn(n, generator=g, dtype=torch.float64))
    z = z0 + torch.randn(n, d, generator=g, dtype=torch.float64) * torch.rand(n, 1, generator=g) * 3
    alpha_pos, beta_hat = radial.constrain(alpha, beta)
    assert (alpha_pos > 0).all() and (beta_hat >= -alpha_pos).all()
    assert (beta[::2] < -alpha_pos[::2]).all()
    f, log_det = radial.radial_step(z, z0, alpha, beta)
    r = (z - z0).norm(dim=1, keepdim=True)
    assert torch.allclose(f, z + beta_hat[:, None] / (alpha_pos[:, None] + r) * (z - z0), atol=1e-12)
    expected = jacobian_log_det(
        lambda row, i: radial.radial_step(row, z0[i:i + 1], alpha[i:i + 1], beta[i:i + 1]), z)
    assert torch.allclose(log_det, expected, atol=1e-10)


@pytest.mark.parametrize("name", ["planar", "radial"])
def test_log_q_of_a_draw_is_the_base_density_minus_each_steps_autograd_log_det(name):
    cls = POSTERIORS[name]
    b, d, steps, k = 3, 4, 3, 2
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(b, d, generator=g, dtype=torch.float64)
    log_std = torch.randn(b, d, generator=g, dtype=torch.float64) * 0.3
    params = torch.randn(b, steps, cls.params_per_step(d), generator=g, dtype=torch.float64)
    posterior = cls(mean, log_std, params)
    torch.manual_seed(5)
    z = posterior.rsample(k)
    torch.manual_seed(5)
    z0 = mean + torch.randn((k, b, d)) * log_std.exp()  # the same base draw
    expected_q = normal_log_prob(z0, mean, log_std).sum(-1)
    flowed = z0.clone()
    for s in range(steps):
        for j in range(k):
            flowed_j = flowed[j]
            expected_q[j] -= jacobian_log_det(lambda row, i, s=s: cls.step(row, params[i:i + 1, s]), flowed_j)
            flowed[j] = torch.stack([cls.step(flowed_j[i:i + 1], params[i:i + 1, s])[0][0] for i in range(b)])
    assert torch.allclose(z, flowed, atol=1e-12)
    assert torch.allclose(posterior.log_prob(z), expected_q, atol=1e-9)
    with pytest.raises(NotImplementedError, match=f"scores only its own latest draws.*{name} flow"):
        posterior.log_prob(z.clone())
    mode = posterior.mode()
    moved = mean.clone()
    for s in range(steps):
        moved = cls.step(moved, params[:, s])[0]
    assert mode.shape == (b, d) and torch.allclose(mode, moved, atol=1e-12)


@pytest.mark.parametrize("name", ["planar", "radial"])
def test_a_one_dimensional_flowed_density_integrates_to_one(name):
    """On a fine grid of base points z0, the flowed points z_K are increasing and the flowed
    density, integrated against their spacing (not the Jacobian), is 1."""
    cls = POSTERIORS[name]
    g = torch.Generator().manual_seed(3)
    params = torch.randn(1, 4, cls.params_per_step(1), generator=g, dtype=torch.float64) * 2
    mean, log_std = torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([[0.2]], dtype=torch.float64)
    z = torch.linspace(-10, 10, 400_001, dtype=torch.float64)[:, None]
    log_q = normal_log_prob(z, mean, log_std)[:, 0]
    for s in range(params.shape[1]):
        z, log_det = cls.step(z, params[:, s].expand(z.shape[0], -1))
        log_q = log_q - log_det
    z = z[:, 0]
    assert (z.diff() > 0).all()
    assert torch.trapezoid(log_q.exp(), z).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", ["planar", "radial"])
def test_the_preset_trains_one_step_to_finite_stats(name, digits):
    combo = resolve(name, digits.spec)
    assert combo.parts["encoder"].name == name and combo.parts["likelihood"].name == "dlogistic"
    assert combo.configs["encoder"].steps == 10 and combo.configs["encoder"].latent_dim == 16
    model = VAE(combo)
    objective = build_objective(combo)
    steps = objective.steps(model, list(model.parameters()))
    batch = Batch(digits.to_model(digits.train[:32], train=True))
    before = [p.detach().clone() for p in model.encoder.parameters()]
    terms = model(batch, 2)
    assert terms.kl is None  # no closed form: the Monte-Carlo KL of the flow's own draws
    stats = update(steps, [torch.optim.Adam(s.parameters, lr=1e-3) for s in steps], terms, 0.5)
    assert "loss" in stats and all(math.isfinite(v.item()) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.encoder.parameters(), strict=True))


def test_eval_writes_finite_rows_for_both_presets(tmp_path):
    vaereg_cli("eval", "--combo", "planar", "--combo", "radial", "--epochs", "1", "--no-fid", "--iw-samples", "8",
               "--threads", "1", "--quiet", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    rows = {row["combo"]: row for row in read_results(tmp_path / "vaereg-results").to_pylist()}
    assert set(rows) == {"planar", "radial"}
    for row in rows.values():
        assert row["status"] == "ok" and math.isfinite(row["nll_nats"]) and math.isfinite(row["nelbo_nats"])
        assert row["nll_nats"] <= row["nelbo_nats"] + 0.5  # IS tightens the bound, up to Monte-Carlo noise
