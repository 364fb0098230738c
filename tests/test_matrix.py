"""Every (preset, or encoder in no preset) x prior x likelihood from the registry: each
combination the resolver accepts
trains one step and evaluates with K=2 to a finite NLL; each it refuses is a one-line usage
error."""

import itertools
import math

import pytest
import torch

from vaereg import UsageError
from vaereg.combo import resolve
from vaereg.registry import get_registry
from vaereg_harness.api import RunConfig, create_model, train_model
from vaereg_harness.data import Dataset
from vaereg_harness.metrics.passes import evaluation_pass
from vaereg_harness.run.config import TrainConfig

BUILT_IN = {"gaussian", "vq", "pixelcnn", "hierarchical", "nvae", "mixtures", "flows"}
SMALL = {"encoder": {"width": 8}, "decoder": {"width": 8}, "likelihood": {"width": 8, "features": 8, "layers": 2}}


def combos() -> list[str]:
    registry = get_registry()
    presets = sorted(n for n, p in registry.presets.items() if p.plugin in BUILT_IN)
    in_presets = {p.slots["encoder"] for p in registry.presets.values()}
    presets += sorted(f"gaussian+encoder={n}" for n, e in registry.parts["encoder"].items()
                      if e.plugin in BUILT_IN and n not in in_presets)
    priors = [None] + sorted(n for n, e in registry.parts["prior"].items() if e.plugin in BUILT_IN)
    likelihoods = sorted(n for n, e in registry.parts["likelihood"].items() if e.plugin in BUILT_IN)
    return [f"{preset}{f'+prior={prior}' if prior else ''}+likelihood={likelihood}"
            for preset, prior, likelihood in itertools.product(presets, priors, likelihoods)]


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    """Binary 8x8 images, so every likelihood (Bernoulli included) can fit."""
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(40, 1, 8, 8, generator=g) > 0.5).to(torch.uint8)
    from vaereg import DataSpec

    return Dataset(DataSpec("tiny", 1, 8, 8, 2), images[:32], images[32:])


def options_for(text: str, tiny) -> dict:
    combo = resolve(text, tiny.spec)
    fields = {slot: {k: v for k, v in SMALL.get(slot, {}).items() if hasattr(combo.configs[slot], k)}
              for slot in ("encoder", "decoder", "likelihood") if slot not in combo.coupled}
    prior = combo.parts["prior"].name
    fields["prior"] = {"pixelcnn": {"width": 8, "layers": 2}, "vamp": {"pseudo_inputs": 5}, "gmm": {"components": 2},
                       "flow": {"hidden": 8}}.get(prior, {}) if "prior" not in combo.coupled else {}
    return fields


@pytest.mark.parametrize("text", combos())
def test_every_combination_trains_and_evaluates_or_is_a_one_line_error(text, tiny, tmp_path):
    try:
        options = options_for(text, tiny)
    except UsageError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    config = RunConfig(train=TrainConfig(epochs=1, batch_size=32, device="cpu"))
    model = create_model(text, tiny, options, config)
    train_model(model, tiny, config, tmp_path, progress=False)
    result = evaluation_pass(model, tiny, iw_samples=2, iw_chunk=2, progress=False)
    assert math.isfinite(result.nll_nats) and math.isfinite(result.nelbo_nats)


def test_pixelcnn_likelihood_serves_the_hierarchies(tiny):
    accepted = []
    for text in combos():
        try:
            resolve(text, tiny.spec)
            accepted.append(text)
        except UsageError:
            pass
    assert {"hierarchical+likelihood=pixelcnn", "nvae+likelihood=pixelcnn", "vq+likelihood=pixelcnn"} <= set(accepted)
    assert len(accepted) >= 40
