"""Combo strings: ``vq+pixelcnn``, ``gaussian+likelihood=bernoulli``.

Tokens apply left to right. A token is a preset (a plugin's default filling of slots), a
``slot=name`` assignment, or a bare part name, which fills the one slot where the part fits
the latent produced by the encoder chosen so far. Everything is checked from latent specs
before any module is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vaereg.config import from_dict
from vaereg.errors import UsageError
from vaereg.parts import SLOTS
from vaereg.registry import PartEntry, Registry, get_registry
from vaereg.specs import DataSpec, LatentSpec


@dataclass(frozen=True)
class Combo:
    """A fully resolved combination: one part and one config per slot."""

    text: str
    data: DataSpec
    parts: dict[str, PartEntry]
    configs: dict[str, Any]
    latent: LatentSpec

    @property
    def canonical(self) -> str:
        return "+".join(f"{slot}={self.parts[slot].name}" for slot in SLOTS)

    def stages(self) -> list[int]:
        return sorted({1, self.parts["prior"].cls.stage})


def _config(entry: PartEntry, options: dict[str, dict[str, Any]]) -> Any:
    return from_dict(entry.cls.Config, options.get(entry.slot, {}), what=f"{entry.slot} {entry.name!r}")


def _fitting(registry: Registry, slot: str, data: DataSpec, latent: LatentSpec) -> str:
    names = [
        e.name
        for e in registry.parts[slot].values()
        if e.cls.misfit(data, latent, e.cls.Config()) is None
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
    options = options or {}
    unknown_groups = set(options) - set(SLOTS)
    if unknown_groups:
        raise UsageError(f"options for unknown slot {sorted(unknown_groups)[0]!r}; slots: {', '.join(SLOTS)}")
    chosen: dict[str, PartEntry] = {}

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
            if slot not in SLOTS:
                raise UsageError(f"unknown slot {slot!r} in {token!r}; slots: {', '.join(SLOTS)}")
            chosen[slot] = registry.part(slot, name)
        elif token in registry.presets:
            for slot, name in registry.presets[token].slots.items():
                chosen[slot] = registry.part(slot, name)
        else:
            candidates = registry.slots_named(token)
            if not candidates:
                raise UsageError(f"unknown preset or part {token!r}; {registry.known_names()}")
            if [c.slot for c in candidates] == ["encoder"]:
                chosen["encoder"] = candidates[0]
                continue
            latent = latent_so_far(token)
            fits = [c for c in candidates if c.cls.misfit(data, latent, _config(c, options)) is None]
            if len(fits) > 1:
                spelled = " or ".join(f"{c.slot}={token}" for c in fits)
                raise UsageError(f"{token!r} fits several slots for a {latent.describe()}; write {spelled}")
            if not fits:
                reasons = "; ".join(
                    f"as {c.slot} it {c.cls.misfit(data, latent, _config(c, options))}" for c in candidates
                )
                raise UsageError(f"{token!r} does not fit a {latent.describe()}: {reasons}")
            chosen[fits[0].slot] = fits[0]

    missing = [slot for slot in SLOTS if slot not in chosen]
    if missing:
        presets = ", ".join(sorted(registry.presets)) or "none"
        raise UsageError(
            f"combo {text!r} leaves {', '.join(missing)} empty; start with a preset ({presets}) "
            f"or add slot=name"
        )
    configs = {slot: _config(chosen[slot], options) for slot in SLOTS}
    latent = chosen["encoder"].cls.latent_spec(data, configs["encoder"])
    for slot in SLOTS[1:]:
        entry = chosen[slot]
        reason = entry.cls.misfit(data, latent, configs[slot])
        if reason:
            raise UsageError(
                f"{slot} {entry.name!r} does not fit encoder {chosen['encoder'].name!r} on "
                f"{data.describe()}: it {reason}; {slot}s that fit: "
                f"{_fitting(registry, slot, data, latent)}"
            )
    return Combo(text, data, chosen, configs, latent)
