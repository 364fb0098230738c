"""The plugin guide cannot rot: every example module of docs/plugins.md (a python block whose
first line is ``# plugin: MODULE``) is installed as pip installs a package, found through its
entry point like any third-party plugin, and passes the conformance kit; the logger example,
which the kit does not run, writes the records it is given."""

import csv
import re
import sys
from pathlib import Path

import pytest
import torch

import vaereg.registry
from tests.test_registry import install_plugin
from vaereg.conformance import assert_conforms

pytestmark = pytest.mark.filterwarnings("ignore::vaereg.registry.PluginLoadWarning")

GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"
EXAMPLE = re.compile(r"^```python\n# plugin: (\w+)\n(.*?)^```$", re.M | re.S)
#: hook -> the check that passes only once the kit has run what the hook registers
EXERCISED = {"register_parts": "nll K=2", "register_objectives": "nll K=2", "register_kl": "nll K=2",
             "register_datasets": "load", "register_metrics": "compute"}
EVERY_HOOK = {*EXERCISED, "register_loggers"}


def examples() -> dict[str, str]:
    """Module name -> source of every example plugin in the guide, in order."""
    found: dict[str, str] = {}
    for module, body in EXAMPLE.findall(GUIDE.read_text(encoding="utf-8")):
        assert module not in found, f"docs/plugins.md has two examples named {module}"
        found[module] = f"# plugin: {module}\n{body}"
    return found


EXAMPLES = examples()


def entry_name(module: str) -> str:
    """The entry-point name the guide's pyproject gives a module: vaereg_learnedprior -> learnedprior."""
    return module.removeprefix("vaereg_")


def hooks(module: str) -> set[str]:
    return set(re.findall(r"^def (register_\w+)\(", EXAMPLES[module], re.M))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Every example installed into one site on ``sys.path``, and the process's registry loaded
    afresh from the entry points (vaereg's own plugins, then the examples); the registry, the
    path, the imported examples and torch's threads are put back afterwards."""
    site = tmp_path_factory.mktemp("site")
    for module, source in EXAMPLES.items():
        install_plugin(site, module.replace("_", "-"), module, source, entry_name(module))
    saved, threads = vaereg.registry._registry, torch.get_num_threads()
    sys.path.insert(0, str(site))
    vaereg.registry._registry = None
    torch.set_num_threads(1)  # small models beside other busy processes: one thread is fastest
    try:
        yield vaereg.registry.get_registry()
    finally:
        torch.set_num_threads(threads)
        vaereg.registry._registry = saved
        sys.path.remove(str(site))
        for module in EXAMPLES:
            sys.modules.pop(module, None)


def test_the_guide_has_an_example_of_every_kind():
    assert set().union(*map(hooks, EXAMPLES)) >= EVERY_HOOK
    assert all(hooks(module) for module in EXAMPLES)  # each block is a whole plugin module


@pytest.mark.parametrize("module", EXAMPLES)
def test_each_example_installs_and_conforms(registry, module):
    name = entry_name(module)
    info = next(p for p in registry.plugins if p.name == name)
    assert (info.distribution, info.version, info.api, info.error) == (module.replace("_", "-"), "1.2.3", 3, None)
    rows = assert_conforms(name, registry)
    passed = {row.check for row in rows if row.result == "pass"}
    for hook in hooks(module) & set(EXERCISED):  # the kit ran it, not only imported it
        assert EXERCISED[hook] in passed, (hook, rows)
    for entry in (e for kind in registry.entries.values() for e in kind.values() if e.plugin == name):
        assert any(r.entry == f"{entry.kind} {entry.name!r}" and r.result == "pass" for r in rows), entry


def test_the_logger_example_writes_every_record(registry, tmp_path):
    from vaereg_harness.logs import loggers

    module = next(m for m in EXAMPLES if "register_loggers" in hooks(m))
    [cls] = [cls for cls, plugin in loggers().values() if plugin == entry_name(module)]
    records = [{"stage": "autoencoder", "step": 23, "epoch": 1, "loss": 2.5, "kl": 0.25},
               {"stage": "autoencoder", "step": 46, "epoch": 2, "loss": 1.75, "kl": 0.5}]
    logger = cls(tmp_path / "run", {"combo": "gaussian"})
    for record in records:
        logger.log(record, lambda: pytest.fail("the example draws no samples"))
    logger.close()
    with (tmp_path / "run" / "metrics.csv").open(newline="") as file:
        assert list(csv.DictReader(file)) == [{k: str(v) for k, v in r.items()} for r in records]


def test_the_zoo_page_has_a_row_and_a_leaderboard_entry_for_every_variant():
    """docs/zoo.md lists every preset of the zoo's plugins and the issue's part variants, and its
    sweep file trains each of them."""
    from tests.test_zoo_presets import PART_PRESETS, zoo_presets

    page = (GUIDE.parent / "zoo.md").read_text()
    listed = set(re.findall(r"^\| `([\w-]+)` \|", page, re.M))
    sweep = (GUIDE.parent / "figures" / "zoo-fashion-mnist.toml").read_text()
    swept = set(re.findall(r'"([\w+=-]+)"', sweep[sweep.index("combo"):sweep.index("]")]))
    variants = {*zoo_presets(), *PART_PRESETS}
    assert variants <= listed, sorted(variants - listed)
    assert variants <= swept, sorted(variants - swept)


def test_the_metrics_page_explains_every_built_in_metric():
    """docs/metrics.md names every built-in metric and its pictures exist (its table is rendered
    from rows by docs/figures.py: tests/test_figures.py checks it)."""
    from vaereg_harness.metrics import BUILT_IN

    page = (GUIDE.parent / "metrics.md").read_text()
    named = set(re.findall(r"^\| `([\w-]+)` \|", page, re.M))
    assert set(BUILT_IN) <= named, sorted(set(BUILT_IN) - named)
    for picture in re.findall(r"!\[[^]]*\]\(([^)]+)\)", page):
        assert (GUIDE.parent / picture).is_file(), picture
