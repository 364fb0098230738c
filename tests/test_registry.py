"""Plugin discovery through real entry points, collisions, blocking, and broken plugins: each is
skipped with one line naming it and the reason, and every command keeps working."""

import json
import os
import sys
import textwrap
import types
import warnings
from pathlib import Path

import pytest

from tests.conftest import vaereg_cli
from vaereg import VaeregError, checks, hookimpl
from vaereg.hookspecs import PLUGIN_API
from vaereg.registry import PluginLoadWarning, build_registry

BROKEN = Path(__file__).parent / "broken_plugins"

THIRD_PARTY = '''
"""A third-party likelihood: one Bernoulli-like part whose probabilities are squashed."""
import torch.nn.functional as F
from vaereg import Likelihood, hookimpl

VAEREG_PLUGIN_API = 3


class HalfBernoulli(Likelihood):
    def param_channels(self):
        return 1

    def log_prob(self, x, params, context):
        return -F.binary_cross_entropy_with_logits(params / 2, x, reduction="none").flatten(1).sum(1)

    def sample(self, params, context):
        return (params > 0).float()


@hookimpl
def register_parts(register):
    register("halfbern", HalfBernoulli)


@hookimpl
def register_presets(register):
    register("halfvae", "a VAE with the squashed likelihood",
             encoder="gaussian", decoder="conv", prior="normal", likelihood="halfbern")
'''


def install_plugin(site: Path, dist: str, module: str, source: str, entry_name: str | None = None) -> None:
    """Lay a package out exactly as pip installs one: the module and a dist-info with entry points."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"  # as a wheel escapes the name
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[vaereg]\n{entry_name or dist} = {module}\n")
    (info / "RECORD").write_text("")


def env_with(site: Path, **extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *sys.path]), **extra)
    return env


def test_third_party_plugin_is_discovered_and_used_in_a_combo(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "vaereg-halfbern", "vaereg_halfbern", THIRD_PARTY)
    env = env_with(site)
    proc = vaereg_cli("plugins", "--json", cwd=tmp_path, env=env)
    assert "note:" not in proc.stderr
    listing = json.loads(proc.stdout)["plugins"]
    plugin = next(p for p in listing if p["name"] == "vaereg-halfbern")
    assert (plugin["version"], plugin["distribution"], plugin["api"], plugin["state"]) == (
        "1.2.3", "vaereg-halfbern", 3, "loaded")
    assert [(e["kind"], e["name"], e["options"]) for e in plugin["entries"]] == [("likelihood", "halfbern", [])]
    assert plugin["presets"] == [{"name": "halfvae", "description": "a VAE with the squashed likelihood",
                                  "slots": {"encoder": "gaussian", "decoder": "conv", "prior": "normal",
                                            "likelihood": "halfbern"}, "objective": "elbo", "options": {}}]
    gaussian = next(p for p in listing if p["name"] == "gaussian")
    encoder = next(e for e in gaussian["entries"] if e["kind"] == "encoder" and e["name"] == "gaussian")
    assert {o["name"]: o["default"] for o in encoder["options"]} == {"latent_dim": 16, "width": 64}
    # the data must be binary for it to make sense; build a binary folder of PNGs
    from PIL import Image

    for split in ("train", "test"):
        (tmp_path / "bin" / split).mkdir(parents=True)
        for i in range(8):
            Image.new("L", (6, 6), 255 * (i % 2)).save(tmp_path / "bin" / split / f"{i}.png")
    proc = vaereg_cli(
        "eval", "--combo", "halfvae", "--combo", "gaussian+halfbern", "--dataset", f"folder:{tmp_path / 'bin'}",
        "--epochs", "1", "--iw-samples", "4", "--quiet", cwd=tmp_path, env=env,
    )
    assert "halfvae" in proc.stdout and "gaussian+halfbern" in proc.stdout
    from vaereg_harness.store.results import read_results

    rows = read_results(tmp_path / "vaereg-results").to_pylist()
    assert {r["combo"] for r in rows} == {"halfvae", "gaussian+halfbern"}
    parts = json.loads(rows[0]["parts"])
    assert parts["likelihood"] == {"name": "halfbern", "plugin": "vaereg-halfbern", "version": "1.2.3"}


def test_plugins_shows_every_kind_with_its_options_and_the_kl_pairs(tmp_path):
    described = json.loads(vaereg_cli("plugins", "--json", cwd=tmp_path).stdout)
    assert described["plugin_api"] == PLUGIN_API and described["supported_apis"] == [2, 3]
    plugins = {p["name"]: p for p in described["plugins"]}
    kinds = {e["kind"] for p in plugins.values() for e in p["entries"]}
    assert {"encoder", "decoder", "prior", "likelihood", "objective", "dataset"} <= kinds
    iwae = next(e for e in plugins["objectives"]["entries"] if e["name"] == "iwae")
    assert iwae["options"] == [{"name": "iw_k", "type": "int", "choices": None, "range": ">= 1 and <= 4096",
                                "optional": False, "default": 5, "describe": "an integer >= 1 and <= 4096"}]
    gmm = next(e for e in plugins["mixtures"]["entries"] if e["name"] == "gmm")
    covariance = next(o for o in gmm["options"] if o["name"] == "covariance")
    assert (covariance["type"], covariance["choices"], covariance["default"]) == ("choice", ["full", "diag"], "full")
    assert plugins["loggers"]["loggers"] == ["optuna", "tensorboard"]
    assert {"posterior": "TopDownPosterior", "prior": "LadderPrior", "plugin": "hierarchical"} in described["kl_pairs"]
    assert plugins["nvae"]["kl_pairs"] == [{"posterior": "NVAEPosterior", "prior": "NVAEPrior", "plugin": "nvae"}]
    assert all(p["distribution"] == "vaereg" and p["state"] == "loaded" for p in plugins.values())

    text = vaereg_cli("plugins", cwd=tmp_path).stdout
    assert text.startswith(f"vaereg plugin API {PLUGIN_API}\nloads plugins written for API 2 and 3\n")
    assert "\nobjectives 0.2.0\n  from vaereg 0.2.0, plugin API 3\n" in text
    assert "  objective  iwae " in text and "options: iw_k=5 (an integer >= 1 and <= 4096)" in text
    assert 'covariance="full" (one of "full", "diag")' in text
    assert "  kl         TopDownPosterior || LadderPrior\n" in text
    assert "  logger     tensorboard    --log tensorboard\n" in text
    assert "DiagonalGaussian || StandardNormal" in text.split("closed-form KL pairs")[1]


@pytest.mark.slow
def test_disabled_plugins_are_not_loaded(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "vaereg-broken", "vaereg_broken", "raise ImportError('needs libfoo')\n")
    proc = vaereg_cli("plugins", cwd=tmp_path, env=env_with(site, VAEREG_DISABLE_PLUGINS="vaereg-broken,gaussian"))
    assert "\nvaereg-broken 1.2.3 (disabled)\n" in proc.stdout
    assert "\ngaussian 0.2.0 (disabled)\n" in proc.stdout
    assert "likelihood dlogistic" not in proc.stdout and "skipped" not in proc.stdout and not proc.stderr
    env = env_with(site, VAEREG_DISABLE_PLUGINS="gaussian")
    proc = vaereg_cli("eval", "--combo", "gaussian", cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 2 and "unknown preset, part or objective 'gaussian'" in proc.stderr
    proc = vaereg_cli("check-plugin", "gaussian", cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 1 and "enabled" in proc.stdout and "disabled by VAEREG_DISABLE_PLUGINS" in proc.stdout


# --- broken plugins -----------------------------------------------------------------------

#: entry-point name -> (module installed, fixture file, the check that skips it, the one-line reason)
SKIPPED = {
    "vaereg-importerror": ("vaereg_importerror", "vaereg_importerror", "import",
                           "failed to import (ImportError: needs libfoo)"),
    "vaereg-untyped": ("vaereg_untyped", "vaereg_untyped", "options",
                       "likelihood 'untyped' has untyped options: UntypedConfig.scale: option type typing.Any is not "
                       "int, float, bool, str or a Literal"),
    "vaereg-outofrange": ("vaereg_outofrange", "vaereg_outofrange", "options",
                          "default options of likelihood 'wide': width=64 is out of range; expected an integer >= 1 "
                          "and <= 16"),
    "vaereg-twin-b": ("vaereg_twin_b", "vaereg_twin", "name",
                      "likelihood 'twin' is already registered by plugin 'vaereg-twin-a'; rename it in plugin "
                      "'vaereg-twin-b'"),
    "vaereg-clash": ("vaereg_clash", "vaereg_clash", "name",
                     "prior 'vamp' is already registered by vaereg's built-in plugin 'mixtures'; rename it in plugin "
                     "'vaereg-clash'"),
    "vaereg-stringapi": ("vaereg_stringapi", "vaereg_stringapi", "plugin API",
                         "VAEREG_PLUGIN_API = '3' is a str; write the integer, e.g. VAEREG_PLUGIN_API = 3"),
    "vaereg-noapi": ("vaereg_noapi", "vaereg_noapi", "plugin API",
                     "declares no plugin API; add VAEREG_PLUGIN_API = 3 to the module (this vaereg supports 2 and 3)"),
    "vaereg-nosample": ("vaereg_nosample", "vaereg_nosample", "contract",
                        "likelihood 'nosample' (NoSample) does not implement sample; vaereg.Likelihood requires it"),
    "vaereg-oldfits": ("vaereg_oldfits", "vaereg_oldfits", "plugin API",
                       "likelihood 'fitsbern' uses 'fits', which plugin API 3 renamed to 'latent_kinds'; rename it "
                       "and declare VAEREG_PLUGIN_API = 3"),
}
#: plugins that load: the first holder of the twin name, and an API-2 plugin that changed nothing
LOADED = {"vaereg-twin-a": ("vaereg_twin_a", "vaereg_twin"), "vaereg-oldapi": ("vaereg_oldapi", "vaereg_oldapi")}
DEPRECATED = ("vaereg plugin 'vaereg-oldapi' is written for plugin API 2; it loads, but API 2 is deprecated: "
              "declare VAEREG_PLUGIN_API = 3")


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    """Every broken fixture (and the two that load) installed side by side, the outputs of
    `vaereg plugins` and of a short `vaereg eval` with all of them present."""
    root = tmp_path_factory.mktemp("broken")
    site = root / "site"
    site.mkdir()
    for entry, (module, fixture, *_) in {**SKIPPED, **LOADED}.items():
        install_plugin(site, entry, module, (BROKEN / f"{fixture}.py").read_text())
    env = env_with(site)
    plugins = vaereg_cli("plugins", cwd=root, env=env, check=False)
    listing = vaereg_cli("plugins", "--json", cwd=root, env=env, check=False)
    run = vaereg_cli("eval", "--combo", "gaussian", "--epochs", "1", "--no-fid", "--iw-samples", "2", "--quiet",
                     cwd=root, env=env, check=False)
    return types.SimpleNamespace(root=root, env=env, plugins=plugins, listing=listing, eval=run)


def notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note:")]


@pytest.mark.slow  # a check-plugin run per broken plugin
@pytest.mark.parametrize("entry", sorted(SKIPPED))
def test_a_broken_plugin_is_skipped_with_one_note_and_every_command_works(entry, broken_site):
    _, _, check, reason = SKIPPED[entry]
    note = f"note: vaereg plugin {entry!r} skipped: {reason}"
    assert broken_site.plugins.returncode == 0
    assert f"\n{entry} 1.2.3 (skipped: {reason})\n" in broken_site.plugins.stdout
    listed = next(p for p in json.loads(broken_site.listing.stdout)["plugins"] if p["name"] == entry)
    assert (listed["state"], listed["error"], listed["entries"]) == ("skipped", reason, [])

    run = broken_site.eval
    assert run.returncode == 0, run.stderr
    assert [line for line in notes(run.stderr) if repr(entry) in line] == [note]
    assert (broken_site.root / "vaereg-results").is_dir()

    proc = vaereg_cli("check-plugin", entry, cwd=broken_site.root, env=broken_site.env, check=False)
    assert proc.returncode == 1, proc.stderr
    failed = [line for line in proc.stdout.splitlines() if " fail: " in line]
    assert len(failed) == 1 and failed[0].startswith(f"{check} ") and failed[0].endswith(f" fail: {reason}")


def test_every_note_of_the_broken_site_names_a_plugin_once(broken_site):
    """Nine skipped plugins and one deprecated one: ten notes, one each, and nothing else."""
    expected = sorted([f"note: vaereg plugin {e!r} skipped: {r}" for e, (*_, r) in SKIPPED.items()]
                      + [f"note: {DEPRECATED}"])
    assert sorted(notes(broken_site.eval.stderr)) == expected
    assert sorted(notes(broken_site.plugins.stderr)) == expected


def test_an_api_2_plugin_loads_with_one_deprecation_note_and_conforms(broken_site):
    listed = {p["name"]: p for p in json.loads(broken_site.listing.stdout)["plugins"]}
    old = listed["vaereg-oldapi"]
    assert (old["state"], old["api"], [e["name"] for e in old["entries"]]) == ("loaded", 2, ["oldbern"])
    shown = "\nvaereg-oldapi 1.2.3\n  from vaereg-oldapi 1.2.3, plugin API 2 (deprecated)\n"
    assert shown in broken_site.plugins.stdout
    assert listed["vaereg-twin-a"]["state"] == "loaded"
    proc = vaereg_cli("check-plugin", "vaereg-oldapi", "--json", cwd=broken_site.root, env=broken_site.env)
    rows = json.loads(proc.stdout)
    api = next(r for r in rows if r["check"] == "plugin API")
    assert api["result"] == "pass" and "API 2 loads, but is deprecated" in api["reason"]
    assert all(r["result"] != "fail" for r in rows) and any(r["check"] == "nll K=2" for r in rows)


class _A:
    VAEREG_PLUGIN_API = 3

    @hookimpl
    def register_parts(register):
        from vaereg_gaussian.likelihoods import Bernoulli

        register("same", Bernoulli)


class _B(_A):
    pass


def test_two_plugins_registering_one_name_skip_the_second_naming_both():
    with pytest.warns(PluginLoadWarning) as caught:
        registry = build_registry([("first", _A, "1"), ("second", _B, "1")])
    reason = "likelihood 'same' is already registered by plugin 'first'; rename it in plugin 'second'"
    assert [str(w.message) for w in caught] == [f"vaereg plugin 'second' skipped: {reason}"]
    assert [(p.name, p.error) for p in registry.plugins] == [("first", None), ("second", reason)]
    assert registry.get("likelihood", "same").plugin == "first"


def test_unknown_part_lists_known_ones():
    registry = build_registry([("first", _A, "1")])
    with pytest.raises(VaeregError, match=r"unknown likelihood 'nope'; known likelihoods: same"):
        registry.part("likelihood", "nope")


# --- the plugin-API check -----------------------------------------------------------------

@pytest.mark.parametrize(("declared", "problem"), [
    (3, None),
    (2, None),
    (1, "written for plugin API 1; this vaereg supports 2 and 3"),
    (4, "written for plugin API 4; this vaereg supports 2 and 3"),
    ("3", "VAEREG_PLUGIN_API = '3' is a str; write the integer, e.g. VAEREG_PLUGIN_API = 3"),
    (3.0, "VAEREG_PLUGIN_API = 3.0 is a float; write the integer, e.g. VAEREG_PLUGIN_API = 3"),
    (True, "VAEREG_PLUGIN_API = True is a bool; write the integer, e.g. VAEREG_PLUGIN_API = 3"),
])
def test_api_problem_names_what_is_declared_and_what_is_supported(declared, problem):
    assert checks.api_problem(types.SimpleNamespace(VAEREG_PLUGIN_API=declared)) == problem
    assert checks.api_problem(types.SimpleNamespace()) == (
        "declares no plugin API; add VAEREG_PLUGIN_API = 3 to the module (this vaereg supports 2 and 3)")


def test_a_plugin_for_an_unsupported_api_is_skipped_and_the_others_load():
    future = types.SimpleNamespace(VAEREG_PLUGIN_API=4, register_parts=_A.register_parts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = build_registry([("future", future, "9"), ("first", _A, "1")])
    assert [str(w.message) for w in caught] == [
        "vaereg plugin 'future' skipped: written for plugin API 4; this vaereg supports 2 and 3"]
    assert registry.plugins[0].error == "written for plugin API 4; this vaereg supports 2 and 3"
    assert registry.get("likelihood", "same").plugin == "first"
    with pytest.raises(VaeregError, match=r"plugin 'future' was skipped: written for plugin API 4"):
        registry.get("prior", "nope")
