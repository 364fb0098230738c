"""A likelihood whose Config has an option of a type vaereg cannot check."""

from dataclasses import dataclass
from typing import Any

from vaereg import hookimpl
from vaereg_gaussian.likelihoods import Bernoulli

VAEREG_PLUGIN_API = 3


@dataclass
class UntypedConfig:
    scale: Any = 1.0


class Untyped(Bernoulli):
    Config = UntypedConfig


@hookimpl
def register_parts(register):
    register("untyped", Untyped)
