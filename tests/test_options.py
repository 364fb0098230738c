"""Typed options: every field of every built-in part's Config, and of the objective, given a
wrong type and an out-of-range value on the command line, exits 2 with one Error line."""

import json
import typing

import pytest
from click.testing import CliRunner

from tests.conftest import built_in
from vaereg import DataSpec, UsageError
from vaereg.combo import resolve
from vaereg.config import FieldType, field_types, from_dict
from vaereg.registry import get_registry
from vaereg_harness.cli import main
from vaereg_objectives.elbo import ELBOConfig
from vaereg_objectives.iwae import IWAEConfig

DIGITS = DataSpec("digits", 1, 8, 8, 17)


def home_combo(slot: str, name: str) -> str | None:
    """A combo in which part ``name`` fills ``slot`` on digits, if there is one."""
    for text in (name, f"gaussian+{slot}={name}", f"vq+{slot}={name}", f"vq2+{slot}={name}"):
        try:
            combo = resolve(text, DIGITS)
        except UsageError:
            continue
        if combo.parts[slot].name == name:
            return text
    return None


def wrong_type(t: FieldType) -> object:
    if typing.get_origin(t.base) is typing.Literal or t.base is str:
        return 5
    return "maybe" if t.base is bool else "abc"


def out_of_range(t: FieldType) -> object | None:
    if typing.get_origin(t.base) is typing.Literal:
        return "nope"
    if t.range is None:
        return None
    if t.range.low is not None:
        return int(t.range.low) - 1 if t.base is int else t.range.low - 1.5
    return int(t.range.high) + 1 if t.base is int else t.range.high * 2


def cases():
    registry = get_registry()
    groups = [("objective", "gaussian", ELBOConfig), ("objective", "gaussian+objective=iwae", IWAEConfig)]
    for slot, by_name in registry.parts.items():
        for name, entry in sorted(by_name.items()):
            combo = home_combo(slot, name) if built_in(entry.plugin) else None
            if combo is not None:
                groups.append((slot, combo, entry.cls.Config))
    for name, entry in sorted(registry.entries["objective"].items()):
        if built_in(entry.plugin) and name not in ("elbo", "iwae"):  # the zoo's, each with its preset
            groups.append(("objective", name, entry.cls.Config))
    for group, combo, config in groups:
        for field, t in field_types(config).items():
            yield pytest.param(combo, f"{group}.{field}", wrong_type(t), id=f"{combo}:{group}.{field}:type")
            bad = out_of_range(t)
            if bad is not None:
                yield pytest.param(combo, f"{group}.{field}", bad, id=f"{combo}:{group}.{field}:range")


@pytest.mark.parametrize(("combo", "key", "value"), list(cases()))
def test_a_bad_option_exits_2_with_one_error_line(combo, key, value):
    text = value if isinstance(value, str) else json.dumps(value)
    result = CliRunner().invoke(main, ["eval", "--combo", combo, "--no-fid", "--set", f"{key}={text}"])
    assert result.exit_code == 2, (result.output, result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and key.split(".")[1] in errors[0] and "expected" in errors[0], result.output
    assert "Traceback" not in result.output


def test_every_built_in_field_is_bounded_or_a_choice_where_a_number_could_hang():
    """Integers without a range ('prior.layers=9223372036854775808') once hung a run."""
    for _, _, config in [
        (e.slot, None, e.cls.Config) for by in get_registry().entries.values() for e in by.values()
        if built_in(e.plugin)
    ]:
        for name, t in field_types(config).items():
            assert t.base is not int or t.range is not None, f"{config.__name__}.{name}"


def test_values_are_coerced_only_when_exact():
    from vaereg_gaussian.encoders import GaussianEncoderConfig

    assert from_dict(GaussianEncoderConfig, {"latent_dim": 8}, what="e").latent_dim == 8
    for bad in (8.5, True, "8", None, 9223372036854775808):
        with pytest.raises(UsageError, match=r"e: latent_dim=.* expected an integer >= 1 and <= 4096"):
            from_dict(GaussianEncoderConfig, {"latent_dim": bad}, what="e")
    with pytest.raises(UsageError, match="not finite"):
        from_dict(ELBOConfig, {"beta": float("nan")}, what="objective")
