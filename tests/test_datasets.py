"""Data sets are a plugin kind: a third-party data set with ground-truth factors, pip-installed
with its own entry point, loads, trains and evaluates through ``--dataset``; its options are
typed and range-checked; a source that returns a malformed data set is one line naming it."""

import dataclasses
import json
import math
import types
from typing import Literal

import pytest
import torch
from click.testing import CliRunner

from tests.conftest import env_with, installed, vaereg_cli
from vaereg import Dataset, DataSource, DataSpec, UsageError, hookimpl
from vaereg import registry as registry_module
from vaereg.data import Factors
from vaereg.registry import PluginInfo, build_registry
from vaereg_harness.api import load_data
from vaereg_harness.cli import main
from vaereg_harness.data import dataset_names
from vaereg_harness.store.results import read_results


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """vaereg-toyfactors pip-installed into a fresh folder, which this module's registry also reads."""
    with installed(tmp_path_factory.mktemp("site"), "vaereg_toyfactors") as target:
        yield target


def bars(factors: torch.Tensor, size: int) -> torch.Tensor:
    """The images the factors describe, drawn pixel by pixel: row y lit from column x for length
    (factor + 1) pixels."""
    images = torch.zeros(len(factors), 1, size, size, dtype=torch.uint8)
    for n, (x, y, extent) in enumerate(factors.tolist()):
        for column in range(x, x + extent + 1):
            images[n, 0, y, column] = 1
    return images


def error_line(output: str) -> str:
    (line,) = [ln for ln in output.splitlines() if ln.startswith("Error: ")]
    return line


@pytest.mark.slow
def test_the_toy_data_set_installs_with_its_entry_point_and_is_listed(site):
    proc = vaereg_cli("plugins", "--json", cwd=site, env=env_with(site))
    listed = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    assert listed["toyfactors"]["version"] == "1.0.0" and listed["toyfactors"]["error"] is None
    assert [(e["kind"], e["name"]) for e in listed["toyfactors"]["entries"]] == [("dataset", "toyfactors")]
    assert listed["datasets"]["error"] is None  # vaereg's own data sets, on the same hook
    entry = registry_module.get_registry().entries["dataset"]["toyfactors"]
    assert (entry.plugin, entry.cls.__module__) == ("toyfactors", "vaereg_toyfactors")
    assert dataset_names().split(", ") == ["digits", "mnist", "binarized-mnist", "fashion-mnist", "cifar10",
                                           "folder:PATH", "shapes", "toyfactors"]
    help_text = vaereg_cli("eval", "--help", cwd=site, env=env_with(site)).stdout
    assert "toyfactors" in " ".join(help_text.split())


def test_the_factors_are_the_ones_that_generated_the_images(site):
    data = load_data("toyfactors")
    assert (data.spec.name, data.spec.channels, data.spec.height, data.spec.width, data.spec.intensities) == \
           ("toyfactors", 1, 8, 8, 2)
    factors = data.factors
    assert factors.names == ("x", "y", "length") and factors.sizes == (5, 8, 4)
    assert factors.train.shape == (900, 3) and factors.test.shape == (100, 3) and data.train_labels is None
    assert torch.equal(data.train, bars(factors.train, 8)) and torch.equal(data.test, bars(factors.test, 8))
    for i, size in enumerate(factors.sizes):  # every value of every factor occurs
        assert torch.equal(factors.train[:, i].unique(), torch.arange(size))
    again, other = load_data("toyfactors"), load_data("toyfactors", options={"seed": 1})
    assert torch.equal(again.train, data.train) and torch.equal(again.factors.test, factors.test)
    assert not torch.equal(other.factors.train, factors.train) and other.spec.name == "toyfactors-seed1"
    big = load_data("toyfactors", options={"size": 12, "test_images": 30})
    assert big.test.shape == (30, 1, 12, 12) and big.factors.sizes == (9, 12, 4)
    assert torch.equal(big.test, bars(big.factors.test, 12))
    subset = data.test_subset(10)  # the factors follow the images they describe
    assert subset.factors.test.shape == (10, 3) and torch.equal(subset.test, bars(subset.factors.test, 8))
    assert subset.factors.train is factors.train


@pytest.mark.slow
def test_eval_trains_and_scores_on_the_plugin_data_set(site, tmp_path):
    vaereg_cli("eval", "--dataset", "toyfactors", "--combo", "gaussian-mlp", "--epochs", "1", "--no-fid",
               "--iw-samples", "2", "--quiet", cwd=tmp_path, env=env_with(site))
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert row["dataset"] == "toyfactors" and math.isfinite(row["nll_nats"])
    assert row["nll_bpd"] == pytest.approx(row["nll_nats"] / (64 * math.log(2)))
    assert [p.name.split("-gaussian-mlp")[0] for p in (tmp_path / "vaereg-runs").iterdir()] == ["toyfactors"]


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("dataset.size=3", "dataset 'toyfactors': size=3 is out of range; expected an integer >= 4 and <= 64"),
        ("dataset.size=big", 'dataset \'toyfactors\': size="big" is not a number; expected an integer'),
        ("dataset.seed=1.5", "dataset 'toyfactors': seed=1.5 is not an integer"),
        ("dataset.colour=1", "dataset 'toyfactors' has no option 'colour'; its options: seed, size, test_images, "
                             "train_images"),
    ],
)
def test_data_set_options_are_typed_and_range_checked(site, tmp_path, assignment, message):
    result = CliRunner().invoke(main, ["eval", "--combo", "gaussian-mlp", "--dataset", "toyfactors", "--set",
                                       assignment, "--no-fid", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and message in error_line(result.output), result.output


def test_a_data_set_option_reaches_the_loader_and_the_printed_config(site, tmp_path):
    result = CliRunner().invoke(main, ["eval", "--combo", "gaussian-mlp", "--dataset", "toyfactors", "--set",
                                       "dataset.size=12", "--print-config", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "[set.dataset]\nsize = 12\n" in result.output and "/toyfactors-size12-gaussian-mlp-seed0-" in result.output
    with pytest.raises(UsageError, match="dataset 'digits' has no option 'size'; its options: none"):
        load_data("digits", options={"size": 12})


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("nosuch", "unknown dataset 'nosuch'; known datasets: binarized-mnist, cifar10, digits, fashion-mnist, "
                   "folder, mnist"),
        ("digits:extra", "--dataset digits:extra: digits takes nothing after ':'; give --dataset digits"),
        ("folder", "--dataset folder needs a PATH; give --dataset folder:PATH"),
    ],
)
def test_a_data_set_name_is_resolved_through_the_registry(tmp_path, dataset, message):
    result = CliRunner().invoke(main, ["eval", "--combo", "gaussian-mlp", "--dataset", dataset, "--no-fid",
                                       "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and message in error_line(result.output), result.output


Defect = Literal["none", "type", "dtype", "shape", "intensity", "labels", "half-labels", "factor-columns",
                 "factor-range"]


@dataclasses.dataclass
class BrokenConfig:
    defect: Defect = "none"


class Broken(DataSource):
    """Four 2x2 binary images per split with labels and one factor, damaged as ``defect`` says."""

    Config = BrokenConfig

    def load(self, root, *, download=False, argument=None):
        images = torch.tensor([[0, 1], [1, 0]], dtype=torch.uint8).expand(4, 1, 2, 2).clone()
        labels, factor = torch.arange(4), torch.arange(4)[:, None] % 2
        data = Dataset(DataSpec("broken", 1, 2, 2, 2), images, images.clone(), labels, labels.clone(),
                       factors=Factors(("parity",), (2,), factor, factor.clone()))
        damage = {
            "none": {}, "dtype": {"train": images.float()}, "shape": {"test": images[:, :, :1]},
            "intensity": {"test": images * 2}, "labels": {"train_labels": labels[:3]},
            "half-labels": {"test_labels": None},
            "factor-columns": {"factors": dataclasses.replace(data.factors, test=torch.zeros(4, 2, dtype=torch.long))},
            "factor-range": {"factors": dataclasses.replace(data.factors, train=factor + 1)},
        }
        return {"images": images} if self.config.defect == "type" else dataclasses.replace(
            data, **damage[self.config.defect])


@pytest.fixture
def broken(monkeypatch):
    """A registry holding one plugin, ``brokendata``, whose data set ``broken`` comes out damaged."""
    module = types.ModuleType("vaereg_brokendata")
    module.VAEREG_PLUGIN_API = 3
    module.register_datasets = hookimpl(lambda register: register("broken", Broken))
    registry = build_registry([PluginInfo("brokendata", "1.0", module=module)])
    assert registry.plugins[0].error is None
    monkeypatch.setattr(registry_module, "_registry", registry)


@pytest.mark.parametrize(
    ("defect", "problem"),
    [
        ("type", "load returned a dict, not a vaereg.Dataset"),
        ("dtype", "train is torch.float32; images are stored as torch.uint8 intensities"),
        ("shape", "test has shape [4, 1, 1, 2]; expected [N >= 1, 1, 2, 2] from its spec"),
        ("intensity", "test holds the value 2, but spec.intensities is 2 (values 0..1)"),
        ("labels", "train_labels has shape [3]; expected [4] (train has 4 images)"),
        ("half-labels", "only train_labels is given; give labels for both splits or neither"),
        ("factor-columns", "factors.test has shape [4, 2]; expected [4, 1] (test has 4 images)"),
        ("factor-range", "factors.train holds 2 for factor 'parity', whose size is 2 (values 0..1)"),
    ],
)
def test_a_malformed_data_set_is_one_line_naming_it(broken, tmp_path, defect, problem):
    expected = f"dataset 'broken' (plugin 'brokendata') loaded a malformed data set: {problem}"
    with pytest.raises(UsageError) as caught:
        load_data("broken", options={"defect": defect})
    assert str(caught.value) == expected
    result = CliRunner().invoke(main, ["train", "--combo", "gaussian-mlp", "--dataset", "broken", "--set",
                                       f"dataset.defect={defect}", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and error_line(result.output) == f"Error: {expected}", result.output
    assert not (tmp_path / "runs").exists()


def test_the_undamaged_source_passes_the_check(broken):
    data = load_data("broken", condition="label")
    assert data.spec.classes == 4 and data.factors.names == ("parity",)
