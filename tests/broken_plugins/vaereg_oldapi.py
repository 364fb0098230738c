"""Written for plugin API 2, using nothing API 3 changed: it loads, with a deprecation note."""

from vaereg import hookimpl
from vaereg_gaussian.likelihoods import Bernoulli

VAEREG_PLUGIN_API = 2


class OldBernoulli(Bernoulli):
    """Bernoulli pixels, registered by an API-2 plugin."""


@hookimpl
def register_parts(register):
    register("oldbern", OldBernoulli)
