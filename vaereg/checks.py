"""What every plugin is checked for when it registers, before anything is built: a supported
integer plugin API, the base class of its kind, the methods that kind must implement, and a
``Config()`` whose defaults pass their own declared types and ranges. Each check returns None,
or one line saying what is wrong and what would be right."""

from __future__ import annotations

from typing import Any

from vaereg import hookspecs
from vaereg.config import check, field_types
from vaereg.data import DataSource
from vaereg.errors import VaeregError
from vaereg.metrics import COLUMN_TYPES, Metric
from vaereg.objectives import Objective
from vaereg.parts import SLOTS, Decoder, Encoder, Likelihood, Prior

#: Kinds of registered entry: the four part slots, then the other kinds of plugin.
KINDS: tuple[str, ...] = (*SLOTS, "objective", "dataset", "metric")

#: kind -> (its base class, the methods a class of that kind must implement)
CONTRACTS: dict[str, tuple[type, tuple[str, ...]]] = {
    "encoder": (Encoder, ("latent_spec", "forward")),
    "decoder": (Decoder, ("forward",)),
    "prior": (Prior, ("log_prob", "sample")),
    "likelihood": (Likelihood, ("param_channels", "log_prob", "sample")),
    "objective": (Objective, ("loss",)),
    "dataset": (DataSource, ("load",)),
    "metric": (Metric, ("compute",)),
}

#: Names plugin API 3 gave a new meaning: an API-2 class that defines one is refused.
RENAMED_IN_3 = {
    "fits": "latent_kinds", "misfit": "mismatch", "encoder_misfit": "encoder_mismatch",
    "fitting": "schedule", "fitting_for": "schedule_for", "fit_latents": "prior_latents",
}


def api_problem(module: Any) -> str | None:
    """Why ``module``'s ``VAEREG_PLUGIN_API`` cannot be loaded, or None."""
    supported = " and ".join(map(str, hookspecs.SUPPORTED_APIS))
    if not hasattr(module, "VAEREG_PLUGIN_API"):
        return (f"declares no plugin API; add VAEREG_PLUGIN_API = {hookspecs.PLUGIN_API} to the module "
                f"(this vaereg supports {supported})")
    api = module.VAEREG_PLUGIN_API
    if type(api) is not int:
        return (f"VAEREG_PLUGIN_API = {api!r} is a {type(api).__name__}; write the integer, e.g. "
                f"VAEREG_PLUGIN_API = {hookspecs.PLUGIN_API}")
    if api not in hookspecs.SUPPORTED_APIS:
        return f"written for plugin API {api}; this vaereg supports {supported}"
    return None


def kind_of(cls: Any) -> str | None:
    """The kind a registered class belongs to by its base class, or None."""
    if not isinstance(cls, type):
        return None
    for kind, (base, _) in CONTRACTS.items():
        if issubclass(cls, base) and (kind not in SLOTS or getattr(cls, "slot", None) == kind):
            return kind
    return None


def entry_problem(kind: str, name: str, cls: Any, api: int) -> str | None:
    """Why ``cls`` cannot be registered as the ``kind`` called ``name``, or None."""
    what = f"{kind} {name!r}"
    base, required = CONTRACTS[kind]
    if not isinstance(cls, type) or not issubclass(cls, base):
        return f"{what} is {cls!r}, not a subclass of vaereg.{base.__name__}"
    if api == 2:
        renamed = [old for old in RENAMED_IN_3 if any(old in k.__dict__ for k in cls.__mro__)]
        if renamed:
            old = renamed[0]
            return (f"{what} uses {old!r}, which plugin API 3 renamed to {RENAMED_IN_3[old]!r}; rename it and "
                    f"declare VAEREG_PLUGIN_API = 3")
    problem = config_problem(what, cls)
    if problem:
        return problem
    missing = [m for m in required if _owner(cls, m) is base]
    if kind == "prior" and cls.schedule_for(cls.Config()) == "fit" and _owner(cls, "fit") is Prior:
        missing.append("fit")
    if missing:
        return f"{what} ({cls.__name__}) does not implement {', '.join(missing)}; vaereg.{base.__name__} requires it"
    if kind != "metric":
        return None
    if not cls.columns:
        return f"{what} declares no columns; list its result columns in `columns`"
    bad = [c for c in cls.columns if c.type not in COLUMN_TYPES]
    if bad:
        return f"{what}: column {bad[0].name!r} has type {bad[0].type!r}; a column is int, float or str"
    return None


def config_problem(what: str, cls: type) -> str | None:
    """Why ``cls.Config`` is not a typed options dataclass whose defaults pass their own checks."""
    try:
        field_types(cls.Config)
    except TypeError as exc:
        return f"{what} has untyped options: {exc}"
    try:
        check(cls.Config(), what=f"default options of {what}")
    except VaeregError as exc:
        return str(exc)
    except Exception as exc:  # Config() itself refused its defaults
        return f"{what}: Config() with its defaults fails ({type(exc).__name__}: {exc})"
    return None


def _owner(cls: type, method: str) -> type | None:
    """The first class in ``cls``'s MRO that defines ``method``."""
    return next((k for k in cls.__mro__ if method in k.__dict__), None)
