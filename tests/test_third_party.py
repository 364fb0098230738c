"""Third-party plugins installed by pip as real packages with their own entry points: a VampPrior
(a prior that uses its encoder), a diagonal Gaussian mixture fitted by EM after stage 1 (a prior
that fits itself, with N(0, I) standing in), an objective with its own options and a preset naming
it, an adversarial objective with its own discriminator and optimiser, a data set with
ground-truth factors and a metric, all used together by one command."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from tests.conftest import env_with, installed, vaereg_cli
from vaereg import Context
from vaereg.model import Batch
from vaereg.objectives import build_objective
from vaereg_harness.api import RunConfig, create_model, train_model
from vaereg_harness.logs import MetricsLog
from vaereg_harness.run.config import TrainConfig
from vaereg_harness.store.results import read_results

PACKAGES = ("vaereg_refvamp", "vaereg_emmix", "vaereg_scaledkl", "vaereg_latentgan", "vaereg_toyfactors",
            "vaereg_toymetric")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The plugins pip-installed into a fresh folder, which this module's registry also reads."""
    with installed(tmp_path_factory.mktemp("site"), *PACKAGES) as target:
        yield target


def config(epochs: int = 1) -> RunConfig:
    return RunConfig(train=TrainConfig(epochs=epochs, batch_size=128, seed=5, device="cpu", threads=1), iw_samples=4)


def test_vamp_log_prob_is_the_mixture_of_the_encoder_posteriors_at_the_pseudo_inputs(site, digits):
    model = create_model("gaussian+prior=refvamp", digits, {"prior": {"pseudo_inputs": 7}}).eval()
    prior = model.prior
    prior.prepare()
    with torch.no_grad():
        q = model.encoder(prior.pseudo.clamp(0, 1), Context())
        mixture = MixtureSameFamily(Categorical(logits=torch.zeros(7)),
                                    Independent(Normal(q.mean, q.log_std.exp()), 1))
        z = torch.randn(11, 16) * 2
        assert torch.allclose(prior.log_prob(z, Context()), mixture.log_prob(z), atol=1e-4)
        assert not torch.allclose(prior.log_prob(z, Context()), Independent(Normal(0, torch.ones(16)), 1).log_prob(z))


def test_vamp_encodes_its_pseudo_inputs_once_per_pass_and_trains_jointly(site, digits):
    model = create_model("gaussian+prior=refvamp", digits, config=config())
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    terms = model(Batch(digits.to_model(digits.train[:8], train=True)), k=3)
    assert len(calls) == 2  # the batch, and the pseudo-inputs once, whatever k is
    assert terms.kl is None  # no registered KL pair: Monte Carlo
    before = model.prior.pseudo.detach().clone()
    train_model(model, digits, config(), Path(site) / "runs", progress=False)
    assert not torch.equal(before, model.prior.pseudo)  # the pseudo-inputs learn with the autoencoder


def test_vamp_runs_from_the_command_line(site, tmp_path):
    vaereg_cli("eval", "--combo", "gaussian+prior=refvamp", "--epochs", "1", "--iw-samples", "4", "--no-fid",
               "--quiet", cwd=tmp_path, env=env_with(site))
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert math.isfinite(row["nll_nats"]) and '"plugin": "refvamp"' in row["parts"]


def test_em_prior_trains_stage_one_against_the_stand_in_then_fits_by_em(site, digits, tmp_path):
    mixture = create_model("gaussian+prior=emmix", digits, config=config(2))
    assert not mixture.prior_trained and type(mixture.active_prior).__name__ == "StandardNormal"
    reports, _ = train_model(mixture, digits, config(2), tmp_path / "a", progress=False)
    plain = create_model("gaussian", digits, config=config(2))
    train_model(plain, digits, config(2), tmp_path / "b", progress=False)
    autoencoder = {k: v for k, v in mixture.state_dict().items() if not k.startswith("prior.") and k != "_extra_state"}
    assert autoencoder.keys() == {k for k in plain.state_dict() if k != "_extra_state"}
    for name, value in autoencoder.items():
        assert torch.equal(value, plain.state_dict()[name]), name  # the stand-in was N(0, I)
    assert [r.stage for r in reports] == ["autoencoder", "prior"] and mixture.prior_trained
    assert mixture.active_prior is mixture.prior and mixture.prior.means.abs().sum() > 0


def test_em_log_likelihood_never_decreases(site, digits, tmp_path):
    from vaereg_harness.run.trainer import Trainer

    model = create_model("gaussian+prior=emmix", digits, {"prior": {"components": 6, "iterations": 40}},
                         config(1))
    trainer = Trainer(model, digits, config(1).train, build_objective(model.combo), tmp_path / "c.pt",
                      progress=False, loggers=[MetricsLog(tmp_path, {})])
    trainer.run()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    history = [r["log_likelihood"] for r in records if r["stage"] == "prior"]
    assert len(history) == 40 and history[-1] > history[0] + 1
    assert all(b >= a - 1e-9 for a, b in zip(history, history[1:], strict=False))


def test_a_plugin_objective_reduces_the_terms_as_its_equation_says(site, digits):
    config = RunConfig(objective={"gamma": 3.0, "alpha": 0.5})
    model = create_model("gaussian+objective=scaledkl", digits, config=config)
    objective = build_objective(model.combo)
    terms = model(Batch(digits.to_model(digits.train[:8], train=True)), objective.draws)
    q = terms.posterior
    kl = Independent(Normal(q.mean, q.log_std.exp()), 1)
    kl = torch.distributions.kl_divergence(kl, Independent(Normal(torch.zeros_like(q.mean), 1.0), 1))
    expected = (-0.5 * terms.log_px[0] + 3.0 * kl).mean()
    loss, stats = objective.loss(terms, 0.0)
    assert torch.allclose(loss, expected, atol=1e-4) and torch.allclose(stats["kl"], kl.mean(), atol=1e-4)


def test_a_preset_names_its_objective_and_options_and_set_overrides_them(site, digits):
    from vaereg.combo import resolve

    combo = resolve("scaledvae", digits.spec)
    assert combo.objective.name == "scaledkl" and combo.configs["objective"].gamma == 4.0
    assert combo.canonical.endswith("+objective=scaledkl")
    assert resolve("scaledvae", digits.spec, {"objective": {"gamma": 1.5}}).configs["objective"].gamma == 1.5
    swapped = resolve("scaledvae+objective=elbo", digits.spec)  # the preset's options were for its objective
    assert swapped.objective.name == "elbo" and swapped.configs["objective"].beta == 1.0


def test_a_plugin_objective_runs_from_a_preset_on_the_command_line(site, tmp_path):
    vaereg_cli("eval", "--combo", "scaledvae", "--epochs", "1", "--iw-samples", "2", "--no-fid", "--quiet",
               cwd=tmp_path, env=env_with(site))
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert json.loads(row["config"])["objective"] == {"name": "scaledkl", "gamma": 4.0, "alpha": 1.0}
    assert math.isfinite(row["nll_nats"])


def test_every_step_of_an_adversarial_objective_takes_its_gradient_before_any_optimiser_moves(site, digits):
    from vaereg_harness.run.trainer import update

    model = create_model("gaussian-mlp+objective=latentgan", digits, config=config())
    objective = build_objective(model.combo)
    twin, twin_objective = copy.deepcopy(model), copy.deepcopy(objective)
    batch = Batch(digits.to_model(digits.train[:16], train=True))

    torch.manual_seed(3)
    steps = objective.steps(model, list(model.parameters()))
    optimizers = [torch.optim.Adam(s.parameters, lr=s.lr or 1e-3, betas=s.betas) for s in steps]
    stats = update(steps, optimizers, model(batch), 0.0)

    torch.manual_seed(3)  # the same draws, by hand: each loss's gradient on its own parameters, then both steps
    out = twin(batch)
    discriminator = list(twin_objective.discriminator.parameters())
    generator_grads = torch.autograd.grad(twin_objective.loss(out, 0.0)[0], list(twin.parameters()))
    critic_grads = torch.autograd.grad(twin_objective.discriminator_loss(out, 0.0)[0], discriminator)
    for params, grads, lr, betas in ((list(twin.parameters()), generator_grads, 1e-3, (0.9, 0.999)),
                                     (discriminator, critic_grads, 5e-4, (0.5, 0.9))):
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        torch.optim.Adam(params, lr=lr, betas=betas).step()

    for a, b in zip([*model.parameters(), *objective.parameters()], [*twin.parameters(), *twin_objective.parameters()],
                    strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert {"loss", "fooled", "discriminator_loss"} <= set(stats)


def test_an_adversarial_objective_trains_from_the_command_line(site, tmp_path):
    vaereg_cli("train", "--combo", "gaussian-mlp+objective=latentgan", "--set", "objective.hidden=16", "--quiet",
               "--epochs", "2", cwd=tmp_path, env=env_with(site))
    (path,) = tmp_path.glob("vaereg-runs/*/checkpoint.pt")
    saved = torch.load(path, weights_only=True)
    assert len(saved["optimizers"]) == 2 and saved["objective"]["discriminator.0.weight"].shape == (16, 16)
    records = [json.loads(line) for line in (path.parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and all(math.isfinite(r["discriminator_loss"]) for r in records)


class StopAtEpoch(MetricsLog):
    """Interrupts training when epoch ``at`` is logged: the checkpoint holds the epoch before."""

    def __init__(self, folder, at):
        super().__init__(folder, {})
        self.at = at

    def log(self, record, samples):
        if record.get("epoch") == self.at:
            raise KeyboardInterrupt
        super().log(record, samples)


def test_a_resumed_adversarial_run_equals_an_uninterrupted_one(site, digits, tmp_path):
    from vaereg_harness.run.trainer import Trainer

    run = RunConfig(train=TrainConfig(epochs=2, batch_size=256, seed=2, device="cpu", checkpoint_every=0, threads=1),
                    objective={"hidden": 8})

    def trainer(folder, loggers=()):
        model = create_model("gaussian-mlp+objective=latentgan", digits, config=run)
        return Trainer(model, digits, run.train, build_objective(model.combo), folder / "checkpoint.pt",
                       progress=False, loggers=list(loggers))

    whole = trainer(tmp_path / "whole")
    whole.run()
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "cut", [StopAtEpoch(tmp_path / "cut", 2)]).run()
    resumed = trainer(tmp_path / "cut")
    resumed.run(resume=True)
    for a, b in ((whole.model, resumed.model), (whole.objective, resumed.objective)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert not torch.is_tensor(x) or torch.equal(x, y), name


def test_one_eval_uses_a_plugin_objective_data_set_and_metric(site, tmp_path):
    vaereg_cli("eval", "--combo", "gaussian-mlp+objective=scaledkl", "--set", "objective.gamma=3",
               "--dataset", "toyfactors", "--metrics", "factor-count,recon", "--epochs", "1", "--iw-samples", "2",
               "--no-fid", "--quiet", cwd=tmp_path, env=env_with(site))
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    config = json.loads(row["config"])
    assert row["dataset"] == "toyfactors" and row["factor_count"] == 3 and math.isfinite(row["recon_mse"])
    assert config["objective"] == {"name": "scaledkl", "gamma": 3.0, "alpha": 1.0}
    assert {"factor-count", "recon"} <= set(config["metrics"]) and math.isfinite(row["nll_nats"])
