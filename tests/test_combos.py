"""Combo resolution: what fills which slot, and the documented errors."""

import pytest

from tests.conftest import vaereg_cli
from vaereg import DataSpec, UsageError
from vaereg.combo import resolve

DIGITS = DataSpec("digits", 1, 8, 8, 17)
BINARY = DataSpec("bin", 1, 8, 8, 2)


def test_preset_then_overrides_apply_left_to_right():
    combo = resolve("gaussian+likelihood=bernoulli+decoder=mlp", BINARY)
    assert combo.canonical == "encoder=gaussian+decoder=mlp+prior=normal+likelihood=bernoulli"
    assert resolve("gaussian+bernoulli", BINARY).parts["likelihood"].name == "bernoulli"


def test_part_options_reach_the_latent_spec():
    combo = resolve("gaussian", DIGITS, {"encoder": {"latent_dim": 5}})
    assert combo.latent.shape == (5,)


@pytest.mark.parametrize(
    "text, data, message",
    [
        ("nope", DIGITS,
         r"unknown preset, part or objective 'nope'; presets: .*gaussian.*; parts: .*dlogistic.*; objectives: .*elbo"),
        ("gaussian+likelihood=nope", DIGITS, r"unknown likelihood 'nope'; known likelihoods: bernoulli, dlogistic"),
        ("gaussian+bernoulli", DIGITS, r"'bernoulli' does not fit .*needs binary data \(2 intensities\)"),
        ("gaussian+likelihood=bernoulli", DIGITS,
         r"likelihood 'bernoulli' does not fit encoder 'gaussian' on digits .*that fit: dlogistic, gaussian"),
        ("gaussian++conv", DIGITS, r"empty token"),
        ("conv+gaussian", DIGITS, r"'conv' comes before any encoder .*put a preset or encoder first"),
        ("encoder=gaussian", DIGITS, r"leaves decoder, prior, likelihood empty; start with a preset"),
        ("gaussian+slot=conv", DIGITS, r"unknown slot 'slot'"),
    ],
)
def test_bad_combos_say_what_would_fit(text, data, message):
    with pytest.raises(UsageError, match=message):
        resolve(text, data)


def test_unknown_option_lists_the_known_ones():
    with pytest.raises(UsageError, match=r"encoder 'gaussian' has no option 'latent'; its options: latent_dim, width"):
        resolve("gaussian", DIGITS, {"encoder": {"latent": 3}})


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "--combo", "gaussian+likelihood=bernoulli"], "needs binary data"),
        (["eval", "--combo", "nope"], "unknown preset, part or objective 'nope'"),
        (["eval", "--combo", "gaussian", "--set", "objective.bogus=1"],
         "objective 'elbo' has no option 'bogus'; its options: beta"),
        (["eval", "--combo", "gaussian", "--set", "beta"], "should look like GROUP.NAME=VALUE"),
        (["eval", "--combo", "gaussian", "--dataset", "mnist", "--data-root", "nowhere"],
         "train-images-idx3-ubyte is missing"),
        (["eval", "--combo", "gaussian", "--epochs", "0"], "--epochs"),
        (["sample", "missing.pt"], "no checkpoint at missing.pt"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(tmp_path, args, message):
    proc = vaereg_cli(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and message in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "vaereg-results").exists()
