"""vaereg: a registry of variational-autoencoder parts, discovered through pluggy."""

from vaereg.codes import UniformCodes
from vaereg.config import Range
from vaereg.context import Context, context_bias
from vaereg.errors import UsageError, VaeregError
from vaereg.gaussian import DiagonalGaussian, StandardNormal
from vaereg.hookspecs import PLUGIN_API, hookimpl
from vaereg.parts import Decoder, Encoder, Likelihood, NoOptions, Posterior, Prior, PriorLatents
from vaereg.specs import DataSpec, LatentSpec, continuous, discrete

__version__ = "0.2.0"

__all__ = [
    "PLUGIN_API",
    "Context",
    "DataSpec",
    "Decoder",
    "DiagonalGaussian",
    "Encoder",
    "PriorLatents",
    "LatentSpec",
    "Likelihood",
    "NoOptions",
    "Posterior",
    "Prior",
    "Range",
    "StandardNormal",
    "UniformCodes",
    "UsageError",
    "VaeregError",
    "context_bias",
    "continuous",
    "discrete",
    "hookimpl",
]
