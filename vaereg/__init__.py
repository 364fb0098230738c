"""vaereg: a registry of variational-autoencoder parts, discovered through pluggy."""

from vaereg.errors import UsageError, VaeregError
from vaereg.hookspecs import hookimpl
from vaereg.parts import Decoder, Encoder, Likelihood, NoOptions, Posterior, Prior
from vaereg.specs import DataSpec, LatentSpec, continuous, discrete

__version__ = "0.1.0"

__all__ = [
    "DataSpec",
    "Decoder",
    "Encoder",
    "LatentSpec",
    "Likelihood",
    "NoOptions",
    "Posterior",
    "Prior",
    "UsageError",
    "VaeregError",
    "continuous",
    "discrete",
    "hookimpl",
]
