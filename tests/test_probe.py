"""The probe batch: every built-in combo passes it; a part that breaks its contract is refused
before anything is written, in one line naming the plugin, the part and the shapes; and the
probe never changes what training does."""

import importlib.util
import itertools
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from tests.conftest import built_in, vaereg_cli
from tests.test_registry import env_with, install_plugin
from vaereg import Dataset, DataSpec, Objective, StandardNormal, UsageError, hookimpl
from vaereg import registry as registry_module
from vaereg.combo import resolve
from vaereg.model import VAE
from vaereg.probe import ProbeError, probe, probe_combo
from vaereg.registry import PluginInfo, build_registry, get_registry
from vaereg_gaussian.likelihoods import Bernoulli

BROKEN = Path(__file__).parent / "broken_plugins"
CPU = torch.device("cpu")


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    """Binary 8x8 images, so every likelihood (Bernoulli included) fits."""
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(24, 1, 8, 8, generator=g) > 0.5).to(torch.uint8)
    return Dataset(DataSpec("tiny", 1, 8, 8, 2), images[:16], images[16:])


def test_every_built_in_combo_passes_the_probe(tiny):
    """Every preset (and encoder in no preset) x prior x likelihood, and each preset with each
    objective, that the resolver accepts: coupled encoders (ladder, NVAE), hierarchical and
    discrete latents, priors fitted after the autoencoder (with their stand-ins), all pass."""
    registry = get_registry()
    presets = sorted(n for n, p in registry.presets.items() if built_in(p.plugin) and "objective" not in p.slots)
    in_presets = {registry.presets[n].slots["encoder"] for n in presets}
    presets += [f"gaussian+encoder={n}" for n, e in sorted(registry.parts["encoder"].items())
                if built_in(e.plugin) and n not in in_presets]
    priors = [""] + sorted(f"+prior={n}" for n, e in registry.parts["prior"].items() if built_in(e.plugin))
    likelihoods = sorted(f"+likelihood={n}" for n, e in registry.parts["likelihood"].items() if built_in(e.plugin))
    texts = ["".join(parts) for parts in itertools.product(presets, priors, likelihoods)]
    texts += [f"{preset}+objective={name}" for preset in presets for name, e in registry.entries["objective"].items()
              if built_in(e.plugin)]
    probed = []
    for text in texts:
        try:
            combo = resolve(text, tiny.spec)
        except UsageError:
            continue
        probe_combo(combo, tiny, CPU)
        probed.append(combo)
    assert len(probed) >= 60
    schedules = {c.schedule for c in probed}
    kinds = {c.latent.kind for c in probed}
    coupled = {c.parts["encoder"].name for c in probed if c.coupled}
    assert schedules == {"joint", "gradient", "fit"} and kinds == {"continuous", "discrete", "hierarchical"}
    assert coupled == {"hierarchical", "nvae"}


def test_a_conditional_model_passes_the_probe(tiny):
    labelled = Dataset(DataSpec("tiny", 1, 8, 8, 2, classes=3), tiny.train, tiny.test, torch.arange(16) % 3,
                       torch.arange(8) % 3)
    for text in ("gaussian-mlp", "vq+pixelcnn", "nvae", "gaussian+prior=mog"):
        probe_combo(resolve(text, labelled.spec), labelled, CPU)


# --- parts that break their contract --------------------------------------------------------

class KeepDim(Bernoulli):
    """log_prob keeps a trailing dimension: [N, 1] where [N] is due."""

    def log_prob(self, x, params, context):
        return super().log_prob(x, params, context)[:, None]


class Cropped(Bernoulli):
    """Samples half as wide as the images."""

    def sample(self, params, context):
        return super().sample(params, context)[..., :4]


class Bright(Bernoulli):
    """Samples in [0, 255], not [0, 1]."""

    def sample(self, params, context):
        return super().sample(params, context) * 255


class Boom(Bernoulli):
    def log_prob(self, x, params, context):
        raise ValueError("boom")


class NaNPrior(StandardNormal):
    def log_prob(self, z, context):
        return super().log_prob(z, context) * float("nan")


class PerImage(Objective):
    """Returns the loss per image, not its mean."""

    def loss(self, terms, progress):
        loss = -terms.log_weights()[0]
        return loss, {"loss": loss.mean().detach()}


class NoStat(Objective):
    def loss(self, terms, progress):
        loss = -terms.log_weights().mean()
        return loss, {"nelbo": loss.detach()}


class BadPlugin:
    VAEREG_PLUGIN_API = 3

    @hookimpl
    def register_parts(register):
        for name, cls in (("keepdim", KeepDim), ("cropped", Cropped), ("bright", Bright), ("boom", Boom),
                          ("nanprior", NaNPrior)):
            register(name, cls)

    @hookimpl
    def register_objectives(register):
        register("perimage", PerImage)
        register("nostat", NoStat)


def load_fixture(name: str):
    spec = importlib.util.spec_from_file_location(name, BROKEN / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def registry():
    """vaereg's own plugins, the broken parts above, and the thin decoder."""
    own = [PluginInfo(ep.name, ep.dist.version, ep.dist.name, module=ep.load())
           for ep in sorted(entry_points(group="vaereg"), key=lambda ep: ep.name) if ep.dist.name == "vaereg"]
    return build_registry([*own, PluginInfo("probe-tests", "1", "probe-tests", module=BadPlugin),
                           PluginInfo("vaereg-thin", "1.2.3", "vaereg-thin", module=load_fixture("vaereg_thin"))])


WHO = "probe batch: {} (plugin 'probe-tests'): "


@pytest.mark.parametrize(("text", "message"), [
    ("gaussian-mlp+likelihood=bernoulli+decoder=thin",
     "probe batch: decoder 'thin' (plugin 'vaereg-thin'): output has shape [6, 1, 8, 1]; expected [6, 1, 8, 8] "
     "([k*B, likelihood.param_channels(), H, W])"),
    ("gaussian-mlp+likelihood=keepdim",
     WHO.format("likelihood 'keepdim'") + "log_prob(x, params) has shape [6, 1]; expected [6] ([k*B])"),
    ("gaussian-mlp+likelihood=cropped",
     WHO.format("likelihood 'cropped'") + "sample(params) has shape [2, 1, 8, 4]; expected [2, 1, 8, 8] "
     "([n, C, H, W])"),
    ("gaussian-mlp+likelihood=bright",
     WHO.format("likelihood 'bright'") + "sample(params) has values in [0, 255]; images are in [0, 1]"),
    ("gaussian-mlp+likelihood=boom",
     WHO.format("likelihood 'boom'") + "log_prob(x, params) failed (ValueError: boom)"),
    ("gaussian-mlp+prior=nanprior",
     WHO.format("prior 'nanprior'") + "log_prob(z) is not finite (6 of 6 values are NaN or infinite)"),
    ("gaussian-mlp+likelihood=bernoulli+objective=perimage",
     WHO.format("objective 'perimage'") + "loss(terms, progress) has shape [2]; expected [] (a scalar)"),
    ("gaussian-mlp+likelihood=bernoulli+objective=nostat",
     WHO.format("objective 'nostat'") + "loss(terms, progress) returned stats without 'loss'; return "
     "{'loss': loss.detach(), ...}"),
])
def test_a_broken_contract_is_one_line_naming_the_plugin_the_part_and_the_shapes(text, message, registry, tiny):
    combo = resolve(text, tiny.spec, registry=registry)
    with pytest.raises(ProbeError) as raised:
        probe_combo(combo, tiny, CPU)
    assert str(raised.value) == message
    assert isinstance(raised.value, UsageError)  # the CLI's exit 2


def test_a_fitted_prior_is_probed_with_its_stand_in(tiny):
    """Before its fit a prior is replaced by its stand-in; both are checked, each named."""
    class BadStandIn(StandardNormal):
        def sample(self, n, context):
            return super().sample(n, context)[:, :3]

    model = VAE(resolve("gaussian-mlp+prior=gmm", tiny.spec))
    model.stand_in = BadStandIn(tiny.spec, model.combo.latent, None)
    with pytest.raises(ProbeError, match=r"^probe batch: stand-in prior BadStandIn of prior 'gmm' \(plugin "
                                         r"'mixtures'\): sample\(2\) has shape \[2, 3\]; expected \[2, 16\]"):
        probe(model, tiny)


# --- the probe changes nothing ------------------------------------------------------------

def tensors(state: dict) -> dict:
    """The tensors of a state dict, copied (the model's extra state left out)."""
    return {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("text", ["nvae", "vq", "gaussian+prior=vamp", "vq2+pixelcnn"])
def test_the_probe_leaves_the_random_stream_weights_buffers_and_modes_as_they_were(text, tiny):
    """NVAE's power iteration updates buffers in every forward pass, VQ's EMA codebook in train
    mode: the probe puts them back, with each module's train/eval mode."""
    model = VAE(resolve(text, tiny.spec))
    model.train()
    model.likelihood.eval()  # a mixed model: each module's mode must come back as it was
    modes = {name: m.training for name, m in model.named_modules()}
    state = tensors(model.state_dict())
    rng = torch.get_rng_state()
    probe(model, tiny)
    assert torch.equal(torch.get_rng_state(), rng)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert same(tensors(model.state_dict()), state)
    assert torch.is_grad_enabled()


def test_training_with_the_probe_gives_the_weights_training_without_it_gives(tiny, tmp_path, monkeypatch):
    from vaereg_harness.api import RunConfig, create_model, train_model
    from vaereg_harness.run import build
    from vaereg_harness.run.config import TrainConfig

    config = RunConfig(train=TrainConfig(epochs=1, batch_size=8, device="cpu", threads=1))  # bitwise repeatable
    options = {"encoder": {"width": 8}}

    def trained(out: Path) -> dict:
        model = create_model("nvae", tiny, options, config)
        train_model(model, tiny, config, out, progress=False)
        return tensors(model.state_dict())

    probed = trained(tmp_path / "probed")
    monkeypatch.setattr(build, "probe", lambda model, data: None)
    assert same(trained(tmp_path / "plain"), probed)


# --- refused before anything is written ---------------------------------------------------

def test_the_python_api_refuses_a_broken_part_before_returning_a_model(registry, tiny, monkeypatch):
    from vaereg_harness.api import create_model

    monkeypatch.setattr(registry_module, "_registry", registry)
    with pytest.raises(ProbeError, match=r"decoder 'thin' \(plugin 'vaereg-thin'\): output has shape \[6, 15, 8, 1\]"):
        create_model("gaussian-mlp+decoder=thin", tiny)


def test_a_broadcastable_decoder_output_exits_2_and_writes_nothing(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "vaereg-thin", "vaereg_thin", (BROKEN / "vaereg_thin.py").read_text())
    env = env_with(site)
    error = ("Error: probe batch: decoder 'thin' (plugin 'vaereg-thin'): output has shape [6, 15, 8, 1]; expected "
             "[6, 15, 8, 8] ([k*B, likelihood.param_channels(), H, W])")
    for command in (["eval", "--no-fid", "--iw-samples", "2"], ["train"]):
        proc = vaereg_cli(*command, "--combo", "gaussian-mlp", "--combo", "gaussian-mlp+decoder=thin", "--epochs", "1",
                          "--quiet", cwd=tmp_path, env=env, check=False)
        assert proc.returncode == 2, proc.stderr
        assert [line for line in proc.stderr.splitlines() if line.startswith("Error:")] == [error]
        assert not (tmp_path / "vaereg-runs").exists() and not (tmp_path / "vaereg-results").exists()
