"""vaereg: a registry of variational-autoencoder parts, discovered through pluggy."""

from vaereg.codes import UniformCodes
from vaereg.config import Range
from vaereg.context import Context, context_bias
from vaereg.data import Dataset, DataSource
from vaereg.errors import UsageError, VaeregError
from vaereg.gaussian import DiagonalGaussian, StandardNormal
from vaereg.hookspecs import PLUGIN_API, hookimpl
from vaereg.metrics import Column, Metric
from vaereg.objectives import Objective, Step
from vaereg.parts import Decoder, Encoder, Likelihood, NoOptions, PointMass, Posterior, Prior, PriorLatents
from vaereg.specs import DataSpec, LatentSpec, continuous, discrete

__version__ = "0.2.0"

__all__ = [
    "PLUGIN_API",
    "Column",
    "Context",
    "DataSource",
    "DataSpec",
    "Dataset",
    "Decoder",
    "DiagonalGaussian",
    "Encoder",
    "PriorLatents",
    "LatentSpec",
    "Likelihood",
    "Metric",
    "NoOptions",
    "Objective",
    "PointMass",
    "Posterior",
    "Prior",
    "Range",
    "StandardNormal",
    "Step",
    "UniformCodes",
    "UsageError",
    "VaeregError",
    "context_bias",
    "continuous",
    "discrete",
    "hookimpl",
]
