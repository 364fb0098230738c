"""Combo strings: ``vq+pixelcnn``, ``gaussian+likelihood=bernoulli``.

Tokens apply left to right. A token is a preset (a plugin's filling of slots, possibly with an
objective and option values), a ``slot=name`` assignment (``objective=NAME`` included), or a
bare name: a part, which fills the one slot where it fits the latent produced by the encoder
chosen so far, or else an objective. Options given by the user override a preset's. Everything
is checked from latent specs before any module is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vaereg.codes import UniformCodes
from vaereg.config import field_types, from_dict, to_dict
from vaereg.errors import UsageError
from vaereg.gaussian import StandardNormal
from vaereg.kl import KLTable
from vaereg.parts import SLOTS, Prior, Schedule
from vaereg.registry import Entry, Registry, get_registry
from vaereg.specs import DataSpec, LatentSpec

DEFAULT_OBJECTIVE = "elbo"
GROUPS = (*SLOTS, "objective")  # what --set may address


@dataclass(frozen=True)
class Combo:
    """A fully resolved combination: one part and one config per slot, and the objective and
    its config (``configs["objective"]``)."""

    text: str
    data: DataSpec
    parts: dict[str, Entry]
    configs: dict[str, Any]
    latent: LatentSpec
    kl: KLTable  # the registry's closed-form KL rules
    objective: Entry

    @property
    def coupled(self) -> dict[str, str]:
        """Slots the encoder fills itself -> the attribute of the encoder that serves there."""
        return self.parts["encoder"].cls.fills

    @property
    def canonical(self) -> str:
        """Every slot spelled out; the objective too unless it is the default."""
        slots = [f"{slot}={self.parts[slot].name}" for slot in SLOTS if slot not in self.coupled]
        if self.objective.name != DEFAULT_OBJECTIVE:
            slots.append(f"objective={self.objective.name}")
        return "+".join(slots)

    @property
    def schedule(self) -> Schedule:
        """How the prior is fitted; a coupled prior always trains with its encoder."""
        if "prior" in self.coupled:
            return "joint"
        return self.parts["prior"].cls.schedule_for(self.configs["prior"])

    @property
    def stand_in(self) -> type[Prior]:
        """The prior used while the autoencoder trains, when the real one is fitted after it."""
        declared = self.parts["prior"].cls.stand_in
        return declared or (UniformCodes if self.latent.is_codes else StandardNormal)

    @property
    def training_prior(self) -> type[Prior]:
        """The prior type the autoencoder trains against: the prior, or its stand-in."""
        if "prior" in self.coupled:
            return self.parts["encoder"].cls.prior_type
        return self.parts["prior"].cls if self.schedule == "joint" else self.stand_in

    @property
    def closed_form_kl(self) -> bool:
        """Whether the autoencoder trains with a closed-form KL per latent dimension."""
        return self.kl.has(self.parts["encoder"].cls.posterior, self.training_prior)

    @property
    def no_density(self) -> str | None:
        """Why this model has no normalised density p(x) to estimate (no NLL and no ELBO), or
        None when it has one."""
        if self.parts["encoder"].cls.posterior.deterministic and not self.latent.is_codes:
            return ("a deterministic encoder into a continuous latent has no posterior density to "
                    "importance-sample with")
        return self.parts["likelihood"].cls.not_a_density(self.data, self.configs["likelihood"])

    def options(self) -> dict[str, dict[str, Any]]:
        """Every part's options by slot, as JSON-ready dicts; ``resolve`` takes them back."""
        return {slot: to_dict(self.configs[slot]) for slot in SLOTS if slot not in self.coupled}

    def objective_options(self) -> dict[str, Any]:
        return {"name": self.objective.name, **to_dict(self.configs["objective"])}


def _config(entry: Entry, options: dict[str, dict[str, Any]]) -> Any:
    return from_dict(entry.cls.Config, options.get(entry.slot, {}), what=f"{entry.slot} {entry.name!r}")


def part_hints(parts: dict[str, Entry], objective: Entry) -> dict[str, Any]:
    """The objective settings the parts ask for (NVAE: warm-up, KL balancing), later slots
    winning, kept only where the objective declares the option."""
    declared = field_types(objective.cls.Config)
    merged: dict[str, Any] = {}
    for slot in SLOTS:
        merged.update(parts[slot].cls.objective)
    return {name: value for name, value in merged.items() if name in declared}


def _serving(registry: Registry, slot: str, data: DataSpec, latent: LatentSpec) -> str:
    names = [
        e.name
        for e in registry.parts[slot].values()
        if e.cls.mismatch(data, latent, e.cls.Config()) is None
    ]
    return ", ".join(sorted(names)) or "none"


def resolve(
    text: str,
    data: DataSpec,
    options: dict[str, dict[str, Any]] | None = None,
    registry: Registry | None = None,
) -> Combo:
    """Resolve ``text`` against ``registry`` for ``data``; ``options`` maps slot -> config fields."""
    registry = registry or get_registry()
    given = options or {}
    unknown_groups = set(given) - set(GROUPS)
    if unknown_groups:
        raise UsageError(f"options for unknown group {sorted(unknown_groups)[0]!r}; groups: {', '.join(GROUPS)}")
    chosen: dict[str, Entry] = {}
    objective = registry.get("objective", DEFAULT_OBJECTIVE) if DEFAULT_OBJECTIVE in registry.entries["objective"] \
        else None
    preset_options: dict[str, dict[str, Any]] = {}  # a preset's part options, under the user's
    objective_presets: dict[str, dict[str, Any]] = {}  # objective name -> a preset's options for it
    options: dict[str, dict[str, Any]] = dict(given)

    def apply_preset(name: str) -> None:
        nonlocal objective
        preset = registry.presets[name]
        for slot in sorted((s for s in preset.slots if s in SLOTS), key=lambda s: s != "encoder"):
            place(registry.part(slot, preset.slots[slot]), name)
        if "objective" in preset.slots:
            objective = registry.get("objective", preset.slots["objective"])
            objective_presets[objective.name] = preset.options.get("objective", {})
        for group, values in preset.options.items():
            if group != "objective":
                preset_options.setdefault(group, {}).update(values)
        options.clear()
        options.update({g: {**preset_options.get(g, {}), **given.get(g, {})} for g in {*preset_options, *given}})

    def place(entry: Entry, token: str) -> None:
        encoder = chosen.get("encoder")
        if entry.slot != "encoder" and encoder is not None and entry.slot in encoder.cls.fills:
            swappable = ", ".join(s for s in SLOTS[1:] if s not in encoder.cls.fills)
            raise UsageError(
                f"{token!r}: encoder {encoder.name!r} is a coupled part that fills the {entry.slot} itself "
                f"(one module holds its {' and '.join(encoder.cls.fills)}); {entry.name!r} cannot replace it. "
                f"Swap only the {swappable}, e.g. '{encoder.name}+{swappable.split(', ')[0]}=NAME'"
            )
        if entry.slot == "encoder":
            for slot in entry.cls.fills:
                chosen.pop(slot, None)
        chosen[entry.slot] = entry

    def latent_so_far(token: str) -> LatentSpec:
        if "encoder" not in chosen:
            raise UsageError(
                f"{token!r} comes before any encoder in {text!r}; put a preset or encoder first, "
                f"e.g. 'vq+{token}'"
            )
        encoder = chosen["encoder"]
        return encoder.cls.latent_spec(data, _config(encoder, options))

    for token in (t.strip() for t in text.split("+")):
        if not token:
            raise UsageError(f"combo {text!r} has an empty token; separate names with single '+'")
        if "=" in token:
            slot, _, name = (s.strip() for s in token.partition("="))
            if slot == "objective":
                objective = registry.get("objective", name)
                continue
            if slot not in SLOTS:
                raise UsageError(f"unknown slot {slot!r} in {token!r}; slots: {', '.join(GROUPS)}")
            place(registry.part(slot, name), token)
        elif token in registry.presets:
            apply_preset(token)
        else:
            candidates = registry.slots_named(token)
            if not candidates and token in registry.entries["objective"]:
                objective = registry.get("objective", token)
                continue
            if not candidates:
                raise UsageError(f"unknown preset, part or objective {token!r}; {registry.known_names()}; "
                                 f"objectives: {', '.join(sorted(registry.entries['objective'])) or 'none'}")
            if [c.slot for c in candidates] == ["encoder"]:
                place(candidates[0], token)
                continue
            latent = latent_so_far(token)
            fits = [c for c in candidates if c.cls.mismatch(data, latent, _config(c, options)) is None]
            fits = [c for c in fits if c.cls.claims(latent)] or fits
            if len(fits) > 1:
                spelled = " or ".join(f"{c.slot}={token}" for c in fits)
                raise UsageError(f"{token!r} fits several slots for a {latent.describe()}; write {spelled}")
            if not fits:
                reasons = "; ".join(
                    f"as {c.slot} it {c.cls.mismatch(data, latent, _config(c, options))}" for c in candidates
                )
                raise UsageError(f"{token!r} does not fit a {latent.describe()}: {reasons}")
            place(fits[0], token)

    if "encoder" in chosen:
        for slot in chosen["encoder"].cls.fills:
            chosen[slot] = chosen["encoder"]
    missing = [slot for slot in SLOTS if slot not in chosen]
    if missing:
        presets = ", ".join(sorted(registry.presets)) or "none"
        raise UsageError(
            f"combo {text!r} leaves {', '.join(missing)} empty; start with a preset ({presets}) "
            f"or add slot=name"
        )
    encoder = chosen["encoder"]
    for slot in encoder.cls.fills:
        if options.get(slot):
            raise UsageError(
                f"options for the {slot} go to encoder {encoder.name!r}, which fills the {slot} itself; "
                f"write encoder.NAME=VALUE"
            )
    configs = {slot: _config(chosen[slot], options) for slot in SLOTS if slot not in encoder.cls.fills}
    configs.update({slot: configs["encoder"] for slot in encoder.cls.fills})
    latent = chosen["encoder"].cls.latent_spec(data, configs["encoder"])
    for slot in SLOTS:
        entry = chosen[slot]
        if slot != "encoder" and entry is chosen["encoder"]:
            continue
        reason = entry.cls.mismatch(data, latent, configs[slot])
        if not reason and slot == "prior":
            reason = entry.cls.encoder_mismatch(chosen["encoder"].cls)
        if reason and slot == "encoder":
            raise UsageError(f"encoder {entry.name!r} does not fit {data.describe()}: it {reason}")
        if reason:
            raise UsageError(
                f"{slot} {entry.name!r} does not fit encoder {chosen['encoder'].name!r} on "
                f"{data.describe()}: it {reason}; {slot}s that fit: "
                f"{_serving(registry, slot, data, latent)}"
            )
    if objective is None:
        raise UsageError(f"no objective named in {text!r} and the default {DEFAULT_OBJECTIVE!r} is not registered; "
                         f"add objective=NAME ({', '.join(sorted(registry.entries['objective'])) or 'none known'})")
    what = f"objective {objective.name!r}"
    configs["objective"] = from_dict(objective.cls.Config, {**part_hints(chosen, objective),
                                                            **objective_presets.get(objective.name, {}),
                                                            **given.get("objective", {})}, what=what)
    combo = Combo(text, data, chosen, configs, latent, registry.kl, objective)
    reason = (objective.cls.mismatch(latent, configs["objective"], combo.closed_form_kl)
              or objective.cls.encoder_mismatch(combo.parts["encoder"].cls.posterior)
              or objective.cls.likelihood_mismatch(combo.parts["likelihood"].cls))
    if reason:
        raise UsageError(f"{what} cannot train {text!r}: it {reason}" if not reason.startswith("objective.")
                         else f"{text!r}: {reason}")
    return combo
