"""Written for plugin API 2 and defining ``fits``, which API 3 renamed ``latent_kinds``."""

from vaereg import hookimpl
from vaereg_gaussian.likelihoods import Bernoulli

VAEREG_PLUGIN_API = 2


class FitsBernoulli(Bernoulli):
    fits = frozenset({"continuous"})


@hookimpl
def register_parts(register):
    register("fitsbern", FitsBernoulli)
