"""Declares no plugin API."""

from vaereg import hookimpl
from vaereg_gaussian.likelihoods import Bernoulli


class Quiet(Bernoulli):
    pass


@hookimpl
def register_parts(register):
    register("quiet", Quiet)
