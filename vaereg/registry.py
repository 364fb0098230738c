"""One typed registry per slot, filled once, lazily, from the ``vaereg`` entry-point group."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points

import pluggy

from vaereg import hookspecs
from vaereg.config import field_types
from vaereg.errors import UsageError, VaeregError
from vaereg.gaussian import DiagonalGaussian, StandardNormal, diagonal_to_standard_kl
from vaereg.kl import KLTable
from vaereg.parts import SLOTS, Part

DISABLE_ENV = "VAEREG_DISABLE_PLUGINS"


class PluginLoadWarning(UserWarning):
    """A plugin could not be imported; the others still load."""


@dataclass(frozen=True)
class PartEntry:
    name: str
    slot: str
    cls: type[Part]
    plugin: str
    version: str

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "plugin": self.plugin, "version": self.version}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    slots: dict[str, str]
    plugin: str
    version: str


@dataclass
class PluginInfo:
    name: str
    version: str
    error: str | None = None
    disabled: bool = False


@dataclass
class Registry:
    parts: dict[str, dict[str, PartEntry]] = field(default_factory=lambda: {s: {} for s in SLOTS})
    presets: dict[str, Preset] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    kl: KLTable = field(default_factory=KLTable)
    loggers: dict[str, tuple[type, str]] = field(default_factory=dict)  # name -> (class, plugin)

    def add_part(self, name: str, cls: type[Part], *, plugin: str, version: str) -> None:
        slot = getattr(cls, "slot", None)
        if slot not in SLOTS:
            raise VaeregError(
                f"plugin {plugin!r} registered {name!r} as {cls.__name__}, which is not an "
                f"Encoder, Decoder, Prior or Likelihood"
            )
        try:
            field_types(cls.Config)
        except TypeError as exc:
            raise VaeregError(f"plugin {plugin!r} registered {slot} {name!r} with untyped options: {exc}") from None
        taken = self.parts[slot].get(name)
        if taken is not None:
            raise VaeregError(
                f"{slot} {name!r} is registered by two plugins: {taken.plugin!r} and {plugin!r}; "
                f"disable one with {DISABLE_ENV}={plugin}"
            )
        self.parts[slot][name] = PartEntry(name, slot, cls, plugin, version)

    def add_preset(
        self, name: str, description: str = "", *, plugin: str, version: str, **slots: str
    ) -> None:
        unknown = set(slots) - set(SLOTS)
        if unknown:
            raise VaeregError(f"preset {name!r} of plugin {plugin!r} names unknown slots {unknown}")
        taken = self.presets.get(name)
        if taken is not None:
            raise VaeregError(
                f"preset {name!r} is registered by two plugins: {taken.plugin!r} and {plugin!r}; "
                f"disable one with {DISABLE_ENV}={plugin}"
            )
        self.presets[name] = Preset(name, description, dict(slots), plugin, version)

    def add_logger(self, name: str, cls: type, *, plugin: str) -> None:
        if name in self.loggers:
            raise VaeregError(f"logger {name!r} is registered by two plugins: {self.loggers[name][1]!r} and "
                              f"{plugin!r}; disable one with {DISABLE_ENV}={plugin}")
        self.loggers[name] = (cls, plugin)

    def logger(self, name: str) -> type:
        if name not in self.loggers:
            known = ", ".join(sorted(self.loggers)) or "none"
            raise UsageError(f"unknown logger {name!r} for --log; known loggers: {known}")
        return self.loggers[name][0]

    def part(self, slot: str, name: str) -> PartEntry:
        try:
            return self.parts[slot][name]
        except KeyError:
            known = ", ".join(sorted(self.parts[slot])) or "none"
            raise UsageError(f"unknown {slot} {name!r}; known {slot}s: {known}") from None

    def slots_named(self, name: str) -> list[PartEntry]:
        return [self.parts[slot][name] for slot in SLOTS if name in self.parts[slot]]

    def known_names(self) -> str:
        parts = sorted({n for by_name in self.parts.values() for n in by_name})
        return f"presets: {', '.join(sorted(self.presets)) or 'none'}; parts: {', '.join(parts)}"


def build_registry(plugins: Iterable[tuple[str, object, str]]) -> Registry:
    """A registry from ``(name, plugin module, version)`` triples, calling each plugin's hooks."""
    pm = pluggy.PluginManager("vaereg")
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    registry.kl.register(DiagonalGaussian, StandardNormal, diagonal_to_standard_kl, plugin="vaereg")
    versions = {}
    for name, module, version in plugins:
        pm.register(module, name=name)
        versions[name] = version
        registry.plugins.append(PluginInfo(name, version))
    for impl in pm.hook.register_parts.get_hookimpls():
        version = versions[impl.plugin_name]
        impl.function(register=partial(registry.add_part, plugin=impl.plugin_name, version=version))
    for impl in pm.hook.register_presets.get_hookimpls():
        version = versions[impl.plugin_name]
        impl.function(
            register=partial(registry.add_preset, plugin=impl.plugin_name, version=version)
        )
    for impl in pm.hook.register_kl.get_hookimpls():
        impl.function(register=partial(registry.kl.register, plugin=impl.plugin_name))
    for impl in pm.hook.register_loggers.get_hookimpls():
        impl.function(register=partial(registry.add_logger, plugin=impl.plugin_name))
    return registry


def load_registry() -> Registry:
    """Import every ``vaereg`` entry point not blocked by ``VAEREG_DISABLE_PLUGINS``."""
    blocked = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    loaded, skipped = [], []
    for ep in sorted(entry_points(group="vaereg"), key=lambda ep: ep.name):
        version = ep.dist.version if ep.dist else "unknown"
        if ep.name in blocked:
            skipped.append(PluginInfo(ep.name, version, disabled=True))
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            error = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"vaereg plugin {ep.name!r} failed to load: {error}", PluginLoadWarning, stacklevel=2)
            skipped.append(PluginInfo(ep.name, version, error=error))
            continue
        api = getattr(module, "VAEREG_PLUGIN_API", hookspecs.PLUGIN_API)
        if api != hookspecs.PLUGIN_API:
            error = f"written for plugin API {api}; this vaereg speaks {hookspecs.PLUGIN_API}"
            warnings.warn(f"vaereg plugin {ep.name!r} not loaded: {error}", PluginLoadWarning, stacklevel=2)
            skipped.append(PluginInfo(ep.name, version, error=error))
            continue
        loaded.append((ep.name, module, version))
    registry = build_registry(loaded)
    registry.plugins += skipped
    return registry


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = load_registry()
    return _registry
