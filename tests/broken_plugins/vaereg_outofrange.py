"""A likelihood whose default option lies outside its own declared range."""

from dataclasses import dataclass
from typing import Annotated

from vaereg import Range, hookimpl
from vaereg_gaussian.likelihoods import Bernoulli

VAEREG_PLUGIN_API = 3


@dataclass
class WideConfig:
    width: Annotated[int, Range(1, 16)] = 64


class Wide(Bernoulli):
    Config = WideConfig


@hookimpl
def register_parts(register):
    register("wide", Wide)
