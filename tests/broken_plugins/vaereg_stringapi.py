"""Declares its plugin API as a string."""

from vaereg import hookimpl
from vaereg_gaussian.likelihoods import Bernoulli

VAEREG_PLUGIN_API = "3"


@hookimpl
def register_parts(register):
    register("stringly", Bernoulli)
