"""One typed registry per kind (the four part slots, objectives, datasets, metrics), presets and
the KL table, filled once, lazily, from the ``vaereg`` entry-point group.

Every registration is checked (``vaereg.checks``). A plugin that fails a check, fails to
import, or takes a name another plugin holds is skipped whole, with a one-line reason; every
other plugin keeps working, and naming the skipped plugin's entries gives that reason. vaereg's
own plugins register first, so on a clash the third party is told to rename its entry.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from vaereg import checks, hookspecs
from vaereg.errors import UsageError
from vaereg.gaussian import DiagonalGaussian, StandardNormal, diagonal_to_standard_kl
from vaereg.kl import KLTable
from vaereg.parts import SLOTS

DISABLE_ENV = "VAEREG_DISABLE_PLUGINS"
BUILT_IN = "vaereg"  # the distribution whose plugins are vaereg's own
#: The groups a preset may name: the part slots and the objective.
PRESET_SLOTS = (*SLOTS, "objective")


class PluginLoadWarning(UserWarning):
    """A plugin was skipped (or loads with a deprecation); the others still load."""


@dataclass(frozen=True)
class Entry:
    """A registered class: its kind (a part slot, ``objective``, ``dataset`` or ``metric``)."""

    kind: str
    name: str
    cls: type
    plugin: str
    version: str

    @property
    def slot(self) -> str:
        return self.kind

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "plugin": self.plugin, "version": self.version}


PartEntry = Entry  # the name plugin API 2 used


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    slots: dict[str, str]  # slot (or "objective") -> name
    options: dict[str, dict[str, Any]]  # group -> option values the preset sets
    plugin: str
    version: str


@dataclass
class PluginInfo:
    name: str
    version: str
    distribution: str = ""
    api: int | None = None
    error: str | None = None  # why it was skipped
    disabled: bool = False
    module: Any = field(default=None, repr=False)  # the loaded module, for the harness's own hooks


@dataclass
class Registry:
    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in checks.KINDS})
    presets: dict[str, Preset] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    kl: KLTable = field(default_factory=KLTable)

    @property
    def parts(self) -> dict[str, dict[str, Entry]]:
        return {slot: self.entries[slot] for slot in SLOTS}

    def get(self, kind: str, name: str) -> Entry:
        """The ``kind`` called ``name``; unknown: a usage error listing what exists, or saying why
        the plugin that would provide it was skipped."""
        try:
            return self.entries[kind][name]
        except KeyError:
            known = ", ".join(sorted(self.entries[kind])) or "none"
            skipped = "; ".join(f"plugin {p.name!r} was skipped: {p.error}" for p in self.plugins if p.error)
            hint = f" ({skipped})" if skipped else ""
            raise UsageError(f"unknown {kind} {name!r}; known {kind}s: {known}{hint}") from None

    def part(self, slot: str, name: str) -> Entry:
        return self.get(slot, name)

    def slots_named(self, name: str) -> list[Entry]:
        return [self.entries[slot][name] for slot in SLOTS if name in self.entries[slot]]

    def known_names(self) -> str:
        parts = sorted({n for slot in SLOTS for n in self.entries[slot]})
        return f"presets: {', '.join(sorted(self.presets)) or 'none'}; parts: {', '.join(parts)}"

    @property
    def loaded(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.module is not None and p.error is None]

    def add_plugin(self, info: PluginInfo, manager: pluggy.PluginManager) -> None:
        """Check and register everything ``info.module`` registers, or nothing: the first problem
        skips the plugin with that reason."""
        staged = Staged(self, info)
        try:
            manager.register(info.module, name=info.name)
            for hook, register in staged.hooks().items():
                for impl in getattr(manager.hook, hook).get_hookimpls():
                    if impl.plugin_name == info.name:
                        impl.function(register=register)
            staged.commit()
        except Skip as exc:
            info.error = str(exc)
        except Exception as exc:  # a hook that raises, or a hook pluggy refuses
            info.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        if info.error is not None:
            if manager.is_registered(info.module):
                manager.unregister(info.module)
            warn(f"vaereg plugin {info.name!r} skipped: {info.error}")
        self.plugins.append(info)


class Skip(Exception):
    """A plugin fails a check: it is skipped with this one-line reason."""


class Staged:
    """One plugin's registrations, checked as they come and added together at the end."""

    def __init__(self, registry: Registry, info: PluginInfo):
        self.registry, self.info = registry, info
        self.entries: list[Entry] = []
        self.presets: list[Preset] = []
        self.kl: list[tuple[type, type, Callable]] = []

    def hooks(self) -> dict[str, Callable]:
        return {"register_parts": self.part, "register_objectives": self.of("objective"),
                "register_datasets": self.of("dataset"), "register_metrics": self.of("metric"),
                "register_presets": self.preset, "register_kl": self.pair}

    def part(self, name: str, cls: type) -> None:
        kind = checks.kind_of(cls)
        if kind not in SLOTS:
            raise Skip(f"registered part {name!r} as {getattr(cls, '__name__', cls)!r}, which is not an Encoder, "
                       f"Decoder, Prior or Likelihood")
        self.add(kind, name, cls)

    def of(self, kind: str) -> Callable[[str, type], None]:
        return lambda name, cls: self.add(kind, name, cls)

    def add(self, kind: str, name: str, cls: type) -> None:
        if not isinstance(name, str) or not name or "+" in name or "=" in name or ":" in name:
            raise Skip(f"registered the {kind} name {name!r}; a name is a non-empty string without '+', '=' or ':'")
        problem = checks.entry_problem(kind, name, cls, self.info.api)
        if problem:
            raise Skip(problem)
        self.entries.append(Entry(kind, name, cls, self.info.name, self.info.version))

    def preset(self, name: str, description: str = "", options: dict | None = None, **slots: str) -> None:
        unknown = sorted(set(slots) - set(PRESET_SLOTS))
        if unknown:
            raise Skip(f"preset {name!r} names the unknown slot {unknown[0]!r}; slots: {', '.join(PRESET_SLOTS)}")
        groups = sorted(set(options or {}) - set(PRESET_SLOTS))
        if groups:
            raise Skip(f"preset {name!r} sets options of the unknown group {groups[0]!r}; groups: "
                       f"{', '.join(PRESET_SLOTS)}")
        self.presets.append(Preset(name, description, dict(slots), {g: dict(v) for g, v in (options or {}).items()},
                                   self.info.name, self.info.version))

    def pair(self, posterior: type, prior: type, rule: Callable) -> None:
        self.kl.append((posterior, prior, rule))

    def commit(self) -> None:
        registry, mine = self.registry, self.info.name
        seen: set[tuple[str, str]] = set()
        for entry in self.entries:
            taken = registry.entries[entry.kind].get(entry.name)
            if taken is not None or (entry.kind, entry.name) in seen:
                raise Skip(clash(f"{entry.kind} {entry.name!r}", taken.plugin if taken else mine, registry, mine))
            seen.add((entry.kind, entry.name))
        for preset in self.presets:
            taken = registry.presets.get(preset.name)
            if taken is not None:
                raise Skip(clash(f"preset {preset.name!r}", taken.plugin, registry, mine))
        for posterior, prior, _ in self.kl:
            if registry.kl.has(posterior, prior):
                pair = f"KL({posterior.__name__} || {prior.__name__})"
                raise Skip(clash(pair, registry.kl.rules[(posterior, prior)][1], registry, mine))
        for entry in self.entries:
            registry.entries[entry.kind][entry.name] = entry
        for preset in self.presets:
            registry.presets[preset.name] = preset
        for posterior, prior, rule in self.kl:
            registry.kl.register(posterior, prior, rule, plugin=mine)


def clash(what: str, holder: str, registry: Registry, mine: str) -> str:
    built_in = any(p.name == holder and p.distribution == BUILT_IN for p in registry.plugins)
    owner = "vaereg's built-in plugin" if built_in else "plugin"
    return f"{what} is already registered by {owner} {holder!r}; rename it in plugin {mine!r}"


def warn(message: str) -> None:
    warnings.warn(message, PluginLoadWarning, stacklevel=3)


def build_registry(plugins: Iterable[PluginInfo | tuple[str, Any, str]]) -> Registry:
    """A registry from loaded plugins (``PluginInfo`` with its module, or ``(name, module,
    version)``), each checked and added in turn."""
    plugins = [p if isinstance(p, PluginInfo) else PluginInfo(p[0], p[2], module=p[1]) for p in plugins]
    manager = pluggy.PluginManager("vaereg")
    manager.add_hookspecs(hookspecs)
    registry = Registry()
    registry.kl.register(DiagonalGaussian, StandardNormal, diagonal_to_standard_kl, plugin="vaereg")
    for info in plugins:
        if info.error is not None or info.disabled:
            registry.plugins.append(info)
            continue
        problem = checks.api_problem(info.module)
        if problem:
            info.error = problem
            warn(f"vaereg plugin {info.name!r} skipped: {problem}")
            registry.plugins.append(info)
            continue
        info.api = info.module.VAEREG_PLUGIN_API
        registry.add_plugin(info, manager)
        if info.api < hookspecs.PLUGIN_API and info.error is None:
            warn(f"vaereg plugin {info.name!r} is written for plugin API {info.api}; it loads, but API "
                 f"{info.api} is deprecated: declare VAEREG_PLUGIN_API = {hookspecs.PLUGIN_API}")
    return registry


def load_registry() -> Registry:
    """Import every ``vaereg`` entry point not blocked by ``VAEREG_DISABLE_PLUGINS``: vaereg's own
    first, then the others by entry-point name."""
    blocked = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}

    def built_in_first(ep) -> tuple[bool, str]:
        return (ep.dist is None or ep.dist.name != BUILT_IN, ep.name)

    infos = []
    for ep in sorted(entry_points(group="vaereg"), key=built_in_first):
        info = PluginInfo(ep.name, ep.dist.version if ep.dist else "unknown", ep.dist.name if ep.dist else "")
        infos.append(info)
        if ep.name in blocked:
            info.disabled = True
            continue
        try:
            info.module = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            info.error = f"failed to import ({type(exc).__name__}: {str(exc).strip()[:200]})"
            warn(f"vaereg plugin {ep.name!r} skipped: {info.error}")
    return build_registry(infos)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = load_registry()
    return _registry
