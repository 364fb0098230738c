"""A hyperspherical latent (Davidson et al. 2018, "Hyperspherical Variational Auto-Encoders"): the
von Mises-Fisher posterior drawn by Wood's rejection sampler with its gradient correction (``vmf``),
the uniform prior on the sphere (``sphere``), their closed-form KL, and the ``svae`` preset."""

from vaereg import hookimpl
from vaereg_sphere.uniform import UniformSphere, vmf_to_uniform_kl
from vaereg_sphere.vmf import VMFEncoder, VonMisesFisher

VAEREG_PLUGIN_API = 3


@hookimpl
def register_parts(register):
    register("vmf", VMFEncoder)
    register("sphere", UniformSphere)


@hookimpl
def register_kl(register):
    register(VonMisesFisher, UniformSphere, vmf_to_uniform_kl)


@hookimpl
def register_presets(register):
    register(
        "svae",
        "S-VAE (Davidson et al. 2018, Hyperspherical Variational Auto-Encoders): von Mises-Fisher posterior, "
        "uniform prior on the sphere, conv decoder, discretized logistic mixture",
        encoder="vmf", decoder="conv", prior="sphere", likelihood="dlogistic",
    )
