"""The Poincare-ball latent: ball maps against closed forms and group identities, the wrapped
normal density against autograd's change of variables and quadrature over the ball, the sample
distances against the chi distribution, and the pvae preset through one optimiser step."""

import math

import pytest
import torch

from vaereg import UsageError, continuous
from vaereg.combo import resolve
from vaereg.config import from_dict
from vaereg.context import Context
from vaereg.model import VAE, Batch
from vaereg.objectives import build_objective
from vaereg_harness.run.trainer import update
from vaereg_hyperbolic.ball import PoincareBall
from vaereg_hyperbolic.encoder import PoincareEncoder, PoincareEncoderConfig
from vaereg_hyperbolic.wrapped import (
    WrappedNormal,
    WrappedNormalPrior,
    WrappedNormalPriorConfig,
    wrapped_normal_log_prob,
)

CURVATURES = [0.5, 1.0, 2.0]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


def points(ball: PoincareBall, n: int, d: int, seed: int, reach: float = 0.9) -> torch.Tensor:
    """``n`` random float64 points of the ball, at most ``reach`` of its radius from the origin."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    radius = reach * torch.rand(n, 1, generator=g, dtype=torch.float64) / ball.c**0.5
    return x / x.norm(dim=-1, keepdim=True) * radius


def tangents(n: int, d: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def chi_mean(d: int) -> float:
    """E|v| for v ~ N(0, I_d)."""
    return math.sqrt(2) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


@pytest.mark.parametrize("c", CURVATURES)
def test_mobius_addition_identities(c):
    ball = PoincareBall(c)
    x, y = points(ball, 50, 4, 0), points(ball, 50, 4, 1)
    zero = torch.zeros_like(x)
    assert torch.allclose(ball.mobius_add(x, zero), x, atol=1e-12)
    assert torch.allclose(ball.mobius_add(zero, x), x, atol=1e-12)
    assert torch.allclose(ball.mobius_add(-x, x), zero, atol=1e-12)
    # left cancellation of the gyrogroup: (-x) (+) (x (+) y) = y
    assert torch.allclose(ball.mobius_add(-x, ball.mobius_add(x, y)), y, atol=1e-10)
    # the sum stays in the ball
    assert (c * ball.mobius_add(x, y).square().sum(-1) < 1).all()


@pytest.mark.parametrize("c", CURVATURES)
def test_exp_and_log_invert_each_other(c):
    ball = PoincareBall(c)
    x, y = points(ball, 50, 5, 2), points(ball, 50, 5, 3)
    v = tangents(50, 5, 4, scale=0.7)
    assert torch.allclose(ball.logmap0(ball.expmap0(v)), v, atol=1e-9)
    assert torch.allclose(ball.expmap0(ball.logmap0(y)), y, atol=1e-12)
    assert torch.allclose(ball.logmap(x, ball.expmap(x, v / ball.conformal_factor(x))),
                          v / ball.conformal_factor(x), atol=1e-9)
    assert torch.allclose(ball.expmap(x, ball.logmap(x, y)), y, atol=1e-10)
    # at the origin the general maps are the origin's
    zero = torch.zeros_like(x)
    assert torch.allclose(ball.expmap(zero, v), ball.expmap0(v), atol=1e-12)
    assert torch.allclose(ball.logmap(zero, y), ball.logmap0(y), atol=1e-12)


@pytest.mark.parametrize("c", CURVATURES)
def test_distance_matches_the_closed_form(c):
    ball = PoincareBall(c)
    x, y = points(ball, 50, 3, 5), points(ball, 50, 3, 6)
    x2, y2 = x.square().sum(-1), y.square().sum(-1)
    closed = torch.acosh(1 + 2 * c * (x - y).square().sum(-1) / ((1 - c * x2) * (1 - c * y2))) / c**0.5
    assert torch.allclose(ball.dist(x, y), closed, rtol=1e-9, atol=1e-12)
    assert torch.allclose(ball.dist(x, y), ball.dist(y, x), rtol=1e-12)
    # a tangent vector's length is lambda_x |v|: d(x, exp_x(v)) = lambda_x |v|, so 2|v| at the origin
    v = tangents(50, 3, 7, scale=0.3)
    assert torch.allclose(ball.dist(torch.zeros_like(v), ball.expmap0(v)), 2 * v.norm(dim=-1), rtol=1e-9)
    lam = ball.conformal_factor(x).squeeze(-1)
    assert torch.allclose(ball.dist(x, ball.expmap(x, v / lam[:, None])), v.norm(dim=-1), rtol=1e-8)


def test_distance_in_one_dimension_is_the_hand_computed_value():
    # d_1(0, 1/2) = 2 artanh(1/2) = ln 3; d_4(0, 1/4) = (2/2) artanh(2 * 1/4) = ln(3) / 2
    origin, half = torch.zeros(1, dtype=torch.float64), torch.full((1,), 0.5, dtype=torch.float64)
    assert PoincareBall(1.0).dist(origin, half).item() == pytest.approx(math.log(3), rel=1e-12)
    assert PoincareBall(4.0).dist(origin, half / 2).item() == pytest.approx(math.log(3) / 2, rel=1e-12)


@pytest.mark.parametrize("c", CURVATURES)
def test_transport_from_the_origin_follows_the_geodesic(c):
    ball = PoincareBall(c)
    mu = points(ball, 50, 4, 8)
    zero = torch.zeros_like(mu)
    # the geodesic 0 -> mu leaves 0 along log_0(mu) and reaches mu along -log_mu(0)
    assert torch.allclose(ball.transport0(mu, ball.logmap0(mu)), -ball.logmap(mu, zero), atol=1e-10)
    # an isometry: lambda_mu |P v| = lambda_0 |v|, and back is its inverse
    v = tangents(50, 4, 9)
    moved = ball.transport0(mu, v)
    assert torch.allclose(ball.conformal_factor(mu) * moved.norm(dim=-1, keepdim=True),
                          2 * v.norm(dim=-1, keepdim=True), rtol=1e-12)
    assert torch.allclose(ball.transport0_back(mu, moved), v, atol=1e-12)


def test_maps_stay_finite_at_the_boundary_in_float32():
    ball = PoincareBall(1.0)
    far = torch.tensor([[30.0, -40.0]])
    z = ball.expmap0(far)
    assert z.norm().item() < 1
    assert torch.isfinite(ball.logmap0(z)).all() and torch.isfinite(ball.dist(-z, z)).all()
    log_q = wrapped_normal_log_prob(z, -z, torch.zeros(1, 2), ball)
    assert torch.isfinite(log_q).all()


def change_of_variables_log_prob(v: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor,
                                 ball: PoincareBall) -> tuple[torch.Tensor, torch.Tensor]:
    """z = exp_mu(P_{0->mu}(v / 2)) and log N(v) - log |det dz/dv| from autograd's Jacobian."""
    def warp(u):
        return ball.expmap(mu, ball.transport0(mu, u / 2))

    jacobian = torch.autograd.functional.jacobian(warp, v)
    base = torch.distributions.Normal(0.0, log_std.exp()).log_prob(v).sum()
    return warp(v), base - torch.linalg.slogdet(jacobian)[1]


@pytest.mark.parametrize(("c", "d"), [(1.0, 1), (1.0, 2), (0.5, 3), (2.0, 4)])
def test_density_is_the_change_of_variables_density(c, d):
    ball = PoincareBall(c)
    mu = points(ball, 1, d, 10 + d, reach=0.8)[0]
    log_std = tangents(1, d, 20 + d, scale=0.3)[0]
    for v in tangents(6, d, 30 + d, scale=1.2):
        z, expected = change_of_variables_log_prob(v, mu, log_std, ball)
        assert wrapped_normal_log_prob(z, mu, log_std, ball).item() == pytest.approx(expected.item(), abs=1e-8)


def ball_grid(ball: PoincareBall, d: int, n: int) -> tuple[torch.Tensor, float]:
    """Midpoints of an ``n^d`` grid over the cube around the ball, those inside it, and the cell volume."""
    radius = 1 / ball.c**0.5
    edges = torch.linspace(-radius, radius, n + 1, dtype=torch.float64)
    mids = (edges[1:] + edges[:-1]) / 2
    grid = torch.stack(torch.meshgrid(*[mids] * d, indexing="ij"), -1).reshape(-1, d)
    return grid[ball.c * grid.square().sum(-1) < 1], (2 * radius / n) ** d


@pytest.mark.parametrize(("c", "d", "n"), [(1.0, 1, 200000), (1.0, 2, 1200), (2.0, 2, 1200)])
def test_density_integrates_to_one_over_the_ball(c, d, n):
    ball = PoincareBall(c)
    mu = torch.tensor([0.35, -0.2][:d], dtype=torch.float64) / c**0.5
    log_std = torch.log(torch.tensor([0.4, 0.7][:d], dtype=torch.float64))
    grid, cell = ball_grid(ball, d, n)
    total = wrapped_normal_log_prob(grid, mu, log_std, ball).exp().sum().item() * cell
    assert total == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("sigma", [1e-3, 0.5])
def test_draws_lie_at_chi_distances_from_the_mean(sigma):
    torch.manual_seed(0)
    ball, d, n = PoincareBall(1.0), 3, 20000
    mu = torch.tensor([[0.5, 0.2, -0.3]], dtype=torch.float64)
    q = WrappedNormal(mu, torch.full_like(mu, math.log(sigma)), ball)
    z = q.rsample(n)[:, 0]
    r = ball.dist(mu, z) / sigma  # |v| / sigma ~ chi_d
    se = math.sqrt(d - chi_mean(d) ** 2) / math.sqrt(n)
    assert r.mean().item() == pytest.approx(chi_mean(d), abs=4 * se)
    assert r.square().mean().item() == pytest.approx(d, rel=0.05)
    if sigma < 0.01:  # concentrated at mu: Euclidean offsets of |v| / lambda_mu
        lam = ball.conformal_factor(mu).item()
        assert ((z - mu).norm(dim=-1) * lam / sigma).mean().item() == pytest.approx(chi_mean(d), rel=0.02)
    assert torch.equal(q.mode(), mu)


def test_prior_is_the_wrapped_normal_at_the_origin(digits):
    torch.manual_seed(1)
    encoder = PoincareEncoder(digits.spec, continuous(4), PoincareEncoderConfig(latent_dim=4, curvature=2.0))
    prior = WrappedNormalPrior(digits.spec, continuous(4), WrappedNormalPriorConfig(sigma=0.8))
    prior.attach(encoder)
    assert prior.ball == PoincareBall(2.0)
    z = prior.sample(20000, Context())
    assert z.shape == (20000, 4) and (2.0 * z.square().sum(-1) < 1).all()
    r = prior.ball.dist(torch.zeros_like(z), z) / 0.8  # |v| / sigma ~ chi_4
    assert r.mean().item() == pytest.approx(chi_mean(4), rel=0.02)
    assert r.square().mean().item() == pytest.approx(4.0, rel=0.03)
    log_std = torch.full((4,), math.log(0.8))
    expected = wrapped_normal_log_prob(z, torch.zeros(4), log_std, PoincareBall(2.0))
    assert torch.allclose(prior.log_prob(z, Context()), expected)


def test_preset_resolves_and_the_prior_takes_the_encoders_curvature(digits):
    combo = resolve("pvae", digits.spec, {"encoder": {"curvature": 0.5}})
    assert combo.parts["encoder"].cls is PoincareEncoder
    assert combo.parts["prior"].cls is WrappedNormalPrior
    assert not combo.closed_form_kl  # Monte Carlo
    assert combo.latent == continuous(10)
    model = VAE(combo)
    assert model.prior.ball == model.encoder.ball == PoincareBall(0.5)


def test_refuses_what_is_not_on_the_ball(digits):
    with pytest.raises(UsageError, match="WrappedNormal"):
        resolve("gaussian+prior=wrapped-normal", digits.spec)
    reason = WrappedNormalPrior.mismatch(digits.spec, continuous(2, 4, 4), WrappedNormalPriorConfig())
    assert "latent vector" in reason
    with pytest.raises(UsageError, match="curvature"):
        from_dict(PoincareEncoderConfig, {"curvature": 0.0}, what="encoder poincare")
    with pytest.raises(UsageError, match="sigma"):
        from_dict(WrappedNormalPriorConfig, {"sigma": -1.0}, what="prior wrapped-normal")


def test_one_optimiser_step_gives_finite_stats(digits):
    torch.manual_seed(2)
    combo = resolve("pvae", digits.spec)
    model = VAE(combo)
    objective = build_objective(combo)
    steps = objective.steps(model, list(model.parameters()))
    batch = Batch(digits.to_model(digits.train[:32], train=True))
    before = [p.detach().clone() for p in model.parameters()]
    terms = model(batch, 2)
    assert (terms.z.square().sum(-1) < 1).all()
    assert torch.isfinite(terms.log_pz).all() and torch.isfinite(terms.log_qz).all()
    stats = update(steps, [torch.optim.Adam(s.parameters, lr=1e-3) for s in steps], terms, 0.0)
    assert stats and all(math.isfinite(v.item()) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
