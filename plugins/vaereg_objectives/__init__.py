"""The built-in objectives, registered exactly as a third party's would be: ``elbo`` (the
default: beta, KL warm-up, free bits, KL balancing) and ``iwae`` (the importance-weighted bound),
and the ``beta-vae`` preset (the ELBO with beta = 4)."""

from vaereg import hookimpl
from vaereg_objectives.elbo import ELBO
from vaereg_objectives.iwae import IWAE

VAEREG_PLUGIN_API = 3


@hookimpl
def register_objectives(register):
    register("elbo", ELBO)
    register("iwae", IWAE)


@hookimpl
def register_presets(register):
    register("beta-vae", "beta-VAE (Higgins et al. 2017): the conv Gaussian VAE with the KL weighted by beta = 4, "
             "trading reconstruction for a more factorised code", options={"objective": {"beta": 4.0}},
             objective="elbo", encoder="gaussian", decoder="conv", prior="normal", likelihood="dlogistic")
