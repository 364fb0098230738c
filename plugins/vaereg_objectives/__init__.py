"""The built-in objectives, registered exactly as a third party's would be: ``elbo`` (the
default: beta, KL warm-up, free bits, KL balancing) and ``iwae`` (the importance-weighted bound)."""

from vaereg import hookimpl
from vaereg_objectives.elbo import ELBO
from vaereg_objectives.iwae import IWAE

VAEREG_PLUGIN_API = 3


@hookimpl
def register_objectives(register):
    register("elbo", ELBO)
    register("iwae", IWAE)
