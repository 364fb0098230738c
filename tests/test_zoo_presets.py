"""The zoo's variants as a user meets them: each preset of the model-zoo issue trains and is
scored from the command line on digits, each row records its objective, and the zoo plugin passes
the conformance kit."""

import json
import math

import pytest

from tests.conftest import vaereg_cli
from vaereg.conformance import assert_conforms
from vaereg.registry import get_registry
from vaereg_harness.store.results import read_results

#: The issue's variants that other built-in plugins register beside their parts.
PART_PRESETS = ("planar", "pvae", "radial", "svae")


def zoo_presets() -> list[str]:
    return sorted(name for name, preset in get_registry().presets.items() if preset.plugin == "zoo")


def test_every_zoo_preset_names_its_own_objective_or_its_own_part():
    registry = get_registry()
    objectives = sorted(e.name for e in registry.entries["objective"].values() if e.plugin == "zoo")
    parts = {(e.slot, e.name) for kind in ("encoder", "decoder", "prior", "likelihood")
             for e in registry.entries[kind].values() if e.plugin == "zoo"}
    assert parts and set(objectives) < set(zoo_presets())
    for name in zoo_presets():
        slots = registry.presets[name].slots
        assert slots.get("objective") == name or any(slots[slot] == part for slot, part in parts)


def test_every_zoo_preset_writes_a_row_from_the_command_line(tmp_path):
    presets = sorted([*zoo_presets(), *PART_PRESETS])
    combos = [arg for name in presets for arg in ("--combo", name)]
    vaereg_cli("eval", *combos, "--epochs", "1", "--no-fid", "--iw-samples", "2", "--quiet", "--threads", "1",
               cwd=tmp_path)
    rows = read_results(tmp_path / "vaereg-results").to_pylist()
    assert sorted(r["combo"] for r in rows) == presets
    objectives = get_registry().entries["objective"]
    for row in rows:
        # the default ELBO is recorded as before objectives were plugins: without its name
        objective = row["combo"] if row["combo"] in objectives else None
        assert json.loads(row["config"])["objective"].get("name") == objective
        if row["nll_note"] is None:
            assert math.isfinite(row["nll_nats"]) and math.isfinite(row["nelbo_nats"])
        else:  # a deterministic encoder into a continuous latent, or a likelihood that is no density
            assert row["nll_nats"] is None and row["nelbo_nats"] is None
    notes = {row["combo"]: row["nll_note"] for row in rows if row["nll_note"]}
    assert set(notes) == {"aae", "ae", "msssim", "rae", "wae"}
    assert "deterministic encoder" in notes["ae"] and "MS-SSIM with 1 scale and window 7x7" in notes["msssim"]


def test_the_zoo_conforms():
    rows = assert_conforms("zoo")
    objectives = {f"objective {name!r}" for name in zoo_presets() if name != "msssim"}
    assert {r.entry for r in rows if r.check == "nll K=2"} >= objectives | {"likelihood 'msssim'"}


def test_an_objective_that_needs_a_factorised_or_gaussian_posterior_refuses_a_flow_encoder_before_anything_runs():
    from vaereg import DataSpec, UsageError
    from vaereg.combo import resolve

    digits = DataSpec("digits", 1, 8, 8, 17)
    with pytest.raises(UsageError, match=r"btcvae.*cross_log_prob.*IAFPosterior"):
        resolve("btcvae+encoder=iaf", digits)
    with pytest.raises(UsageError, match=r"dipvae.*DiagonalGaussian.*IAFPosterior"):
        resolve("dipvae+encoder=iaf", digits)
    assert resolve("infovae+encoder=iaf", digits).objective.name == "infovae"  # MMD needs only the draws
