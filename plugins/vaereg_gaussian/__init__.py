"""Gaussian VAE parts: diagonal-Gaussian encoders and a deterministic one, conv and MLP decoders, the N(0, I) prior
(the core's, with its closed-form KL to the core's diagonal Gaussian), and the Bernoulli,
discretized-logistic-mixture and dequantized-Gaussian likelihoods."""

from vaereg import StandardNormal, hookimpl
from vaereg_gaussian.decoders import ConvDecoder, MLPDecoder
from vaereg_gaussian.encoders import ConvGaussianEncoder, DeterministicEncoder, MLPGaussianEncoder
from vaereg_gaussian.likelihoods import Bernoulli, DequantizedGaussian, DiscretizedLogistic

VAEREG_PLUGIN_API = 3


@hookimpl
def register_parts(register):
    register("gaussian", ConvGaussianEncoder)
    register("gaussian-mlp", MLPGaussianEncoder)
    register("deterministic", DeterministicEncoder)
    register("conv", ConvDecoder)
    register("mlp", MLPDecoder)
    register("normal", StandardNormal)
    register("bernoulli", Bernoulli)
    register("dlogistic", DiscretizedLogistic)
    register("gaussian", DequantizedGaussian)


@hookimpl
def register_presets(register):
    register(
        "gaussian",
        "VAE: conv Gaussian encoder and decoder, N(0, I) prior, discretized logistic mixture",
        encoder="gaussian", decoder="conv", prior="normal", likelihood="dlogistic",
    )
    register(
        "gaussian-mlp",
        "VAE with MLP encoder and decoder (the common reference architecture)",
        encoder="gaussian-mlp", decoder="mlp", prior="normal", likelihood="dlogistic",
    )
