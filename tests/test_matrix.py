"""Every built-in (preset or encoder in no preset) x prior x likelihood x objective, read from the
registry: each combination the resolver accepts trains one step and evaluates with K=2 to a
finite NLL (or, for a model without a density, to no NLL and its reason); each it refuses is a
one-line usage error.

The whole matrix is the ``slow`` selection (``pytest -m slow``, which CI runs). The default
selection keeps a fixed sample of it: every objective on the Gaussian VAE, every part combination
with the ELBO, and every 15th of the rest."""

import contextlib
import functools
import hashlib
import itertools
import math

import pytest
import torch

from tests.conftest import built_in
from vaereg import DataSpec, UsageError
from vaereg.combo import DEFAULT_OBJECTIVE, Combo, resolve
from vaereg.registry import get_registry
from vaereg_harness.api import RunConfig, create_model, train_model
from vaereg_harness.data import Dataset
from vaereg_harness.metrics.passes import evaluation_pass
from vaereg_harness.run.config import TrainConfig

SMALL = {"encoder": {"width": 8}, "decoder": {"width": 8}, "likelihood": {"width": 8, "features": 8, "layers": 2}}
PRIORS = {"pixelcnn": {"width": 8, "layers": 2}, "vamp": {"pseudo_inputs": 5}, "gmm": {"components": 2},
          "flow": {"hidden": 8}}
SAMPLE = 15  # the default selection keeps one in SAMPLE of the combinations beyond its fixed core
TINY = DataSpec("tiny", 1, 8, 8, 2)


def combos() -> list[str]:
    """Every built-in combination, objectives included, as combo text (accepted or not)."""
    registry = get_registry()
    presets = sorted(n for n, p in registry.presets.items()
                     if built_in(p.plugin) and p.slots.get("objective", DEFAULT_OBJECTIVE) == DEFAULT_OBJECTIVE)
    in_presets = {registry.presets[n].slots["encoder"] for n in presets}
    presets += sorted(f"gaussian+encoder={n}" for n, e in registry.parts["encoder"].items()
                      if built_in(e.plugin) and n not in in_presets)
    priors = [None] + sorted(n for n, e in registry.parts["prior"].items() if built_in(e.plugin))
    likelihoods = sorted(n for n, e in registry.parts["likelihood"].items() if built_in(e.plugin))
    objectives = sorted(n for n, e in registry.entries["objective"].items() if built_in(e.plugin))
    return [f"{preset}{f'+prior={prior}' if prior else ''}+likelihood={likelihood}+objective={objective}"
            for preset, prior, likelihood, objective in itertools.product(presets, priors, likelihoods, objectives)]


@functools.cache
def accepted() -> dict[str, Combo]:
    """The combinations of ``combos`` the resolver accepts for the tiny data."""
    resolved = {}
    for text in combos():
        with contextlib.suppress(UsageError):
            resolved[text] = resolve(text, TINY)
    return resolved


def in_default_selection(text: str) -> bool:
    if text.startswith("gaussian+likelihood=dlogistic+") or text.endswith(f"+objective={DEFAULT_OBJECTIVE}"):
        return True
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % SAMPLE == 0


def selection() -> list:
    return [pytest.param(text, marks=() if in_default_selection(text) else pytest.mark.slow) for text in combos()]


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    """Binary 8x8 images, so every likelihood (Bernoulli included) can fit."""
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(40, 1, 8, 8, generator=g) > 0.5).to(torch.uint8)
    return Dataset(TINY, images[:32], images[32:])


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the many tiny models of this module."""


def options_for(text: str) -> dict:
    combo = resolve(text, TINY)
    fields = {slot: {k: v for k, v in SMALL.get(slot, {}).items() if hasattr(combo.configs[slot], k)}
              for slot in ("encoder", "decoder", "likelihood") if slot not in combo.coupled}
    fields["prior"] = PRIORS.get(combo.parts["prior"].name, {}) if "prior" not in combo.coupled else {}
    return fields


@pytest.mark.parametrize("text", selection())
def test_every_combination_trains_and_evaluates_or_is_a_one_line_error(text, tiny, tmp_path):
    try:
        options = options_for(text)
    except UsageError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    config = RunConfig(train=TrainConfig(epochs=1, batch_size=32, device="cpu"))
    model = create_model(text, tiny, options, config)
    train_model(model, tiny, config, tmp_path, progress=False)
    result = evaluation_pass(model, tiny, iw_samples=2, iw_chunk=2, progress=False)
    if model.combo.no_density:
        assert result.nll is None and result.no_density == model.combo.no_density
    else:
        assert math.isfinite(result.nll_nats) and math.isfinite(result.nelbo_nats)


def test_the_matrix_covers_every_objective_and_part_and_its_sample_is_a_fixed_fraction():
    resolved = accepted().values()
    registry = get_registry()
    for kind in ("objective", "encoder", "prior", "likelihood"):
        names = {n for n, e in registry.entries[kind].items() if built_in(e.plugin)}
        used = {c.objective.name if kind == "objective" else c.parts[kind].name for c in resolved}
        assert names <= used, f"built-in {kind}s no accepted combination trains: {sorted(names - used)}"
    texts = combos()
    sampled = sum(in_default_selection(t) for t in texts)
    assert len(texts) / 30 < sampled < len(texts) / 3


def test_pixelcnn_likelihood_serves_the_hierarchies():
    texts = set(accepted())
    assert {f"{base}+likelihood=pixelcnn+objective=elbo" for base in ("hierarchical", "nvae", "vq")} <= texts
    assert len(texts) >= 40
