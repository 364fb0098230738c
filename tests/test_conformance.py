"""The conformance kit: every built-in plugin and the suite's third-party plugins pass it; each
broken fixture fails it, naming the check; ``vaereg check-plugin`` prints the table and exits
1 on a failure."""

import importlib.util
import json
import math
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from tests.conftest import built_in_plugins, vaereg_cli
from vaereg import Column, Dataset, DataSource, DataSpec, Metric, UsageError, hookimpl
from vaereg.conformance import CheckResult, as_json, assert_conforms, check_plugin, table
from vaereg.registry import PluginInfo, build_registry, get_registry
from vaereg_gaussian.likelihoods import DiscretizedLogistic

TESTS = Path(__file__).parent
pytestmark = pytest.mark.filterwarnings("ignore::vaereg.registry.PluginLoadWarning")

#: every plugin vaereg ships


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


def module_from(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def registry_with(*plugins: tuple[str, object]):
    """vaereg's own plugins, then ``plugins`` (entry name, module) as third parties."""
    own = [PluginInfo(ep.name, ep.dist.version, ep.dist.name, module=ep.load())
           for ep in sorted(entry_points(group="vaereg"), key=lambda ep: ep.name) if ep.dist.name == "vaereg"]
    return build_registry([*own, *(PluginInfo(name, "1.2.3", name, module=module) for name, module in plugins)])


def failures(rows: list[CheckResult]) -> list[tuple[str, str]]:
    return [(row.check, row.reason) for row in rows if row.result == "fail"]


@pytest.mark.parametrize("name", built_in_plugins())
def test_every_built_in_plugin_conforms(name):
    rows = assert_conforms(name)
    registry = get_registry()
    assert [r.check for r in rows[:3]] == ["import", "plugin API", "registration"]
    mine = [e for kind in registry.entries.values() for e in kind.values() if e.plugin == name]
    for entry in mine:  # each entry is checked, in a combo of its own or one checked for another entry
        assert any(r.entry == f"{entry.kind} {entry.name!r}" and r.result in ("pass", "skip") for r in rows), entry
    for row in rows:
        if row.check == "nll K=2" and not row.reason.startswith("no NLL"):  # a finite NLL of 8x8 images, in nats
            nll = float(re.match(r"NLL (\S+) nats", row.reason).group(1))
            assert math.isfinite(nll) and 0 < nll < 1000
    probed = [(r.entry, r.combo) for r in rows if r.check == "probe"]
    assert probed == [(r.entry, r.combo) for r in rows if r.check == "nll K=2"]  # each probed combo ran to the end
    if name in ("mixtures", "pixelcnn"):  # priors fitted after the autoencoder run their own stage
        assert any(r.check == "prior stage" and r.result == "pass" for r in rows)


@pytest.mark.parametrize("plugin", ["vaereg_scaledkl", "vaereg_latentgan", "vaereg_toyfactors", "vaereg_toymetric"])
def test_the_suites_third_party_plugins_conform(plugin):
    """An objective with its own options and preset, an adversarial objective with its own
    optimiser, a data set with ground-truth factors, and metrics."""
    name = plugin.replace("_", "-")
    registry = registry_with((name, module_from(TESTS / "plugins" / plugin / f"{plugin}.py", plugin)))
    rows = assert_conforms(name, registry)
    checked = {r.check for r in rows if r.result == "pass"}
    if plugin == "vaereg_latentgan":  # its critic is stepped by its own optimiser, and moves
        assert {"probe", "train step", "nll K=2"} <= checked
    if plugin == "vaereg_toyfactors":
        assert any(r.check == "load" and r.reason.startswith("toyfactors (1x8x8, 2 intensities)") for r in rows)
    if plugin == "vaereg_toymetric":
        recon = next(r for r in rows if r.check == "compute" and r.entry == "metric 'recon'")
        assert recon.result == "pass" and re.fullmatch(r"recon_mse=\S+, recon_psnr=\S+", recon.reason)
        count = next(r for r in rows if r.check == "compute" and r.entry == "metric 'factor-count'")
        assert count.result == "skip" and "needs ground-truth factors" in count.reason


#: fixture -> (the check it fails, where the reason starts)
BROKEN = {
    "vaereg_untyped": ("options", "likelihood 'untyped' has untyped options: UntypedConfig.scale"),
    "vaereg_outofrange": ("options", "default options of likelihood 'wide': width=64 is out of range"),
    "vaereg_clash": ("name", "prior 'vamp' is already registered by vaereg's built-in plugin 'mixtures'; rename it"),
    "vaereg_stringapi": ("plugin API", "VAEREG_PLUGIN_API = '3' is a str"),
    "vaereg_noapi": ("plugin API", "declares no plugin API"),
    "vaereg_nosample": ("contract", "likelihood 'nosample' (NoSample) does not implement sample"),
    "vaereg_oldfits": ("plugin API", "likelihood 'fitsbern' uses 'fits', which plugin API 3 renamed to 'latent_kinds'"),
    "vaereg_thin": ("probe", "probe batch: decoder 'thin' (plugin 'vaereg-thin'): output has shape [6, 15, 8, 1]; "
                             "expected [6, 15, 8, 8]"),
    "vaereg_stuck": ("train step", "step 'critic' moved none of its 2 parameters: its loss does not reach them"),
}


@pytest.mark.parametrize("fixture", sorted(BROKEN))
def test_each_broken_fixture_fails_naming_the_check(fixture):
    check, reason = BROKEN[fixture]
    name = fixture.replace("_", "-")
    registry = registry_with((name, module_from(TESTS / "broken_plugins" / f"{fixture}.py", fixture)))
    failed = failures(check_plugin(name, registry))
    assert failed and all(c == check for c, _ in failed) and any(r.startswith(reason) for _, r in failed), failed
    with pytest.raises(AssertionError, match=re.escape(reason)):
        assert_conforms(name, registry)


def test_a_name_taken_by_another_third_party_fails_the_name_check():
    twin = TESTS / "broken_plugins" / "vaereg_twin.py"
    registry = registry_with(*((f"vaereg-twin-{x}", module_from(twin, f"twin_{x}")) for x in "ab"))
    assert failures(check_plugin("vaereg-twin-a", registry)) == []
    assert failures(check_plugin("vaereg-twin-b", registry)) == [("name", "likelihood 'twin' is already registered by "
                                                                          "plugin 'vaereg-twin-a'; rename it in plugin "
                                                                          "'vaereg-twin-b'")]


@dataclass
class ShadesConfig:
    pass


class Shades(DataSource):
    """Random 8x8 images stored as int64 instead of uint8."""

    def load(self, root, *, download=False, argument=None):
        images = torch.randint(0, 4, (10, 1, 8, 8))
        return Dataset(DataSpec("shades", 1, 8, 8, 4), images, images)


class Talkative(Metric):
    """Returns a column it never declared."""

    columns = (Column("said", int),)

    def compute(self, scoring):
        return {"said": 1, "unsaid": 2}


class Malformed:
    VAEREG_PLUGIN_API = 3

    @hookimpl
    def register_datasets(register):
        register("shades", Shades)

    @hookimpl
    def register_metrics(register):
        register("talkative", Talkative)


class ColourOnly(DiscretizedLogistic):
    """A likelihood for colour images only."""

    @classmethod
    def mismatch(cls, data, latent, config):
        return None if data.channels == 3 else f"needs colour images, got {data.describe()}"


class Colourful:
    VAEREG_PLUGIN_API = 3

    @hookimpl
    def register_parts(register):
        register("colouronly", ColourOnly)


def test_a_part_for_colour_images_is_checked_on_colour_images():
    rows = assert_conforms("colourful", registry_with(("colourful", Colourful)))
    assert ("nll K=2", "gaussian+likelihood=colouronly") in [(r.check, r.combo) for r in rows]


def test_a_part_no_preset_takes_fails_the_compatibility_check():
    class Nowhere(ColourOnly):
        @classmethod
        def mismatch(cls, data, latent, config):
            return "fits nothing"

    class Lonely:
        VAEREG_PLUGIN_API = 3

        @hookimpl
        def register_parts(register):
            register("nowhere", Nowhere)

    [(check, reason)] = failures(check_plugin("lonely", registry_with(("lonely", Lonely))))
    assert check == "compatibility" and reason.startswith("no combo of the registered presets takes it (")
    assert "likelihood 'nowhere' does not fit encoder" in reason and "it fits nothing" in reason


def test_a_malformed_data_set_and_a_metric_with_an_undeclared_column_fail():
    rows = check_plugin("malformed", registry_with(("malformed", Malformed)))
    assert failures(rows) == [
        ("load", "train is torch.int64; images are stored as torch.uint8 intensities"),
        ("compute", "metric 'talkative' returned the undeclared column 'unsaid'; its columns: said"),
    ]
    assert [r.result for r in rows if r.check == "columns"] == ["pass"]


def test_an_unknown_plugin_is_a_usage_error_listing_the_installed_ones():
    with pytest.raises(UsageError, match=r"^unknown plugin 'nope'; installed plugins: datasets, flows, gaussian"):
        check_plugin("nope")


def test_the_table_and_its_json_hold_every_row():
    rows = [CheckResult("import", "", "", "pass"), CheckResult("probe", "decoder 'thin'", "gaussian+decoder=thin",
                                                                "fail", "output has shape [6, 15, 8, 1]")]
    assert table(rows).splitlines() == [
        "check   entry           combo                  result",
        "import  -               -                      pass",
        "probe   decoder 'thin'  gaussian+decoder=thin  fail: output has shape [6, 15, 8, 1]",
    ]
    assert json.loads(as_json(rows))[1] == {"check": "probe", "entry": "decoder 'thin'",
                                            "combo": "gaussian+decoder=thin", "result": "fail",
                                            "reason": "output has shape [6, 15, 8, 1]"}


@pytest.mark.slow  # the kit again, every plugin, through the CLI
def test_check_plugin_command_prints_the_table_and_exits_0_when_all_pass(tmp_path):
    proc = vaereg_cli("check-plugin", "vq", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["check", "entry", "combo", "result"]
    assert any(line.split()[:4] == ["probe", "encoder", "'vq'", "vq"] for line in lines)
    assert re.fullmatch(r"vq: \d+ passed, 0 skipped, 0 failed", lines[-1])
    rows = json.loads(vaereg_cli("check-plugin", "vq", "--json", cwd=tmp_path).stdout)
    assert {r["result"] for r in rows} == {"pass"} and len(rows) == len(lines) - 2
    proc = vaereg_cli("check-plugin", "nope", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Error: unknown plugin 'nope'; installed plugins:" in proc.stderr
