"""Plugin discovery through real entry points, collisions, blocking and broken plugins."""

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import vaereg_cli
from vaereg import VaeregError, hookimpl
from vaereg.registry import build_registry

THIRD_PARTY = '''
"""A third-party likelihood: one Bernoulli-like part whose probabilities are squashed."""
import torch.nn.functional as F
from vaereg import Likelihood, hookimpl


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
    listing = json.loads(vaereg_cli("plugins", "--json", cwd=tmp_path, env=env).stdout)["plugins"]
    plugin = next(p for p in listing if p["name"] == "vaereg-halfbern")
    assert plugin["version"] == "1.2.3"
    assert {"slot": "likelihood", "name": "halfbern", "options": {}}.items() <= plugin["parts"][0].items()
    gaussian = next(p for p in listing if p["name"] == "gaussian")
    encoder = next(p for p in gaussian["parts"] if p["slot"] == "encoder" and p["name"] == "gaussian")
    assert encoder["options"] == {"latent_dim": 16, "width": 64}
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
    from vaereg_harness.results import read_results

    rows = read_results(tmp_path / "vaereg-results").to_pylist()
    assert {r["combo"] for r in rows} == {"halfvae", "gaussian+halfbern"}
    parts = json.loads(rows[0]["parts"])
    assert parts["likelihood"] == {"name": "halfbern", "plugin": "vaereg-halfbern", "version": "1.2.3"}


def test_broken_plugin_is_reported_by_name_and_the_rest_load(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "vaereg-broken", "vaereg_broken", "raise ImportError('needs libfoo')\n")
    proc = vaereg_cli("plugins", cwd=tmp_path, env=env_with(site))
    assert "vaereg-broken 1.2.3 (failed: ImportError: needs libfoo)" in proc.stdout
    assert "gaussian" in proc.stdout and "dlogistic" in proc.stdout
    assert "vaereg-broken" in proc.stderr  # warned as well


def test_disabled_plugins_are_not_loaded(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "vaereg-broken", "vaereg_broken", "raise ImportError('needs libfoo')\n")
    proc = vaereg_cli("plugins", cwd=tmp_path, env=env_with(site, VAEREG_DISABLE_PLUGINS="vaereg-broken,gaussian"))
    assert "vaereg-broken 1.2.3 (disabled)" in proc.stdout
    assert "gaussian 0.2.0 (disabled)" in proc.stdout
    assert "likelihood dlogistic" not in proc.stdout and "failed" not in proc.stdout
    env = env_with(site, VAEREG_DISABLE_PLUGINS="gaussian")
    proc = vaereg_cli("eval", "--combo", "gaussian", cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 2 and "unknown preset or part 'gaussian'" in proc.stderr


class _A:
    @hookimpl
    def register_parts(register):
        from vaereg_gaussian.likelihoods import Bernoulli

        register("same", Bernoulli)


class _B(_A):
    pass


def test_two_plugins_registering_one_name_is_an_error_naming_both():
    with pytest.raises(VaeregError, match=r"likelihood 'same' is registered by two plugins: 'first' and 'second'"):
        build_registry([("first", _A, "1"), ("second", _B, "1")])


def test_unknown_part_lists_known_ones():
    registry = build_registry([("first", _A, "1")])
    with pytest.raises(VaeregError, match=r"unknown likelihood 'nope'; known likelihoods: same"):
        registry.part("likelihood", "nope")
