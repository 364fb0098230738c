"""The zoo's variants as a user meets them: each preset trains and is scored from the command
line on digits, each row records its objective, and the zoo plugin passes the conformance kit."""

import json
import math

import pytest

from tests.conftest import vaereg_cli
from vaereg.conformance import assert_conforms
from vaereg.registry import get_registry
from vaereg_harness.store.results import read_results


def zoo_presets() -> list[str]:
    return sorted(name for name, preset in get_registry().presets.items() if preset.plugin == "zoo")


def test_every_zoo_preset_names_its_own_objective():
    registry = get_registry()
    assert zoo_presets() == sorted(e.name for e in registry.entries["objective"].values() if e.plugin == "zoo")
    assert all(registry.presets[name].slots["objective"] == name for name in zoo_presets())


def test_every_zoo_preset_writes_a_row_from_the_command_line(tmp_path):
    combos = [arg for name in zoo_presets() for arg in ("--combo", name)]
    vaereg_cli("eval", *combos, "--epochs", "1", "--no-fid", "--iw-samples", "2", "--quiet", "--threads", "1",
               cwd=tmp_path)
    rows = read_results(tmp_path / "vaereg-results").to_pylist()
    assert sorted(r["combo"] for r in rows) == zoo_presets()
    for row in rows:
        assert json.loads(row["config"])["objective"]["name"] == row["combo"]
        if row["nll_note"] is None:
            assert math.isfinite(row["nll_nats"]) and math.isfinite(row["nelbo_nats"])
        else:  # a deterministic encoder into a continuous latent: no density to score
            assert row["nll_nats"] is None and row["nelbo_nats"] is None and "deterministic" in row["nll_note"]
    assert {row["combo"] for row in rows if row["nll_note"]} >= {"ae", "rae", "wae"}


def test_the_zoo_conforms():
    rows = assert_conforms("zoo")
    assert {r.entry for r in rows if r.check == "nll K=2"} >= {f"objective {name!r}" for name in zoo_presets()}


def test_an_objective_that_needs_a_factorised_or_gaussian_posterior_refuses_a_flow_encoder_before_anything_runs():
    from vaereg import DataSpec, UsageError
    from vaereg.combo import resolve

    digits = DataSpec("digits", 1, 8, 8, 17)
    with pytest.raises(UsageError, match=r"btcvae.*cross_log_prob.*IAFPosterior"):
        resolve("btcvae+encoder=iaf", digits)
    with pytest.raises(UsageError, match=r"dipvae.*DiagonalGaussian.*IAFPosterior"):
        resolve("dipvae+encoder=iaf", digits)
    assert resolve("infovae+encoder=iaf", digits).objective.name == "infovae"  # MMD needs only the draws
