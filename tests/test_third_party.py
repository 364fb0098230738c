"""Two third-party plugins written against plugin API 2, installed by pip as real packages with
their own entry points: a VampPrior (a prior that uses its encoder) and a diagonal Gaussian
mixture fitted by EM after stage 1 (a prior that fits itself, with N(0, I) standing in)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from tests.conftest import vaereg_cli
from vaereg import Context
from vaereg import registry as registry_module
from vaereg.model import Batch
from vaereg_harness.api import RunConfig, create_model, train_model
from vaereg_harness.results import read_results
from vaereg_harness.train import TrainConfig

PLUGINS = Path(__file__).parent / "plugins"
BUILT_IN_VAMP = "mixtures"  # vaereg's own plugin registers 'vamp' too: two plugins may not share a name


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Both plugins pip-installed into a fresh folder, which this module's registry also reads."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(PLUGINS / "vaereg_vamp"), str(PLUGINS / "vaereg_emmix")],
                   check=True, capture_output=True)
    sys.path.insert(0, str(target))
    blocked = os.environ.get(registry_module.DISABLE_ENV)
    os.environ[registry_module.DISABLE_ENV] = BUILT_IN_VAMP
    registry_module._registry = None
    yield target
    sys.path.remove(str(target))
    if blocked is None:
        del os.environ[registry_module.DISABLE_ENV]
    else:
        os.environ[registry_module.DISABLE_ENV] = blocked
    registry_module._registry = None


def env_with(site: Path) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *sys.path]),
                **{registry_module.DISABLE_ENV: BUILT_IN_VAMP})


def config(epochs: int = 1) -> RunConfig:
    return RunConfig(train=TrainConfig(epochs=epochs, batch_size=128, seed=5, device="cpu"), iw_samples=4)


def test_vamp_log_prob_is_the_mixture_of_the_encoder_posteriors_at_the_pseudo_inputs(site, digits):
    model = create_model("gaussian+prior=vamp", digits, {"prior": {"pseudo_inputs": 7}}).eval()
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
    model = create_model("gaussian+prior=vamp", digits, config=config())
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    terms = model(Batch(digits.to_model(digits.train[:8], train=True)), k=3)
    assert len(calls) == 2  # the batch, and the pseudo-inputs once, whatever k is
    assert terms.kl is None  # no registered KL pair: Monte Carlo
    before = model.prior.pseudo.detach().clone()
    train_model(model, digits, config(), Path(site) / "runs", progress=False)
    assert not torch.equal(before, model.prior.pseudo)  # the pseudo-inputs learn with the autoencoder


def test_vamp_runs_from_the_command_line(site, tmp_path):
    vaereg_cli("eval", "--combo", "gaussian+prior=vamp", "--epochs", "1", "--iw-samples", "4", "--no-fid",
               "--quiet", cwd=tmp_path, env=env_with(site))
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert math.isfinite(row["nll_nats"]) and '"plugin": "vamp"' in row["parts"]


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
    from vaereg_harness.train import Trainer

    model = create_model("gaussian+prior=emmix", digits, {"prior": {"components": 6, "iterations": 40}},
                         config(1))
    trainer = Trainer(model, digits, config(1).train, config(1).objective_for(model.combo), tmp_path / "c.pt",
                      progress=False)
    trainer.run()
    history = [h["log_likelihood"] for h in trainer.fit_history]
    assert len(history) == 40 and history[-1] > history[0] + 1
    assert all(b >= a - 1e-9 for a, b in zip(history, history[1:], strict=False))
