"""VQ-VAE parts: a vector-quantizing encoder with an EMA codebook, and the uniform prior over
codes (the core's)."""

from vaereg import UniformCodes, hookimpl
from vaereg_vq.encoder import VQEncoder

VAEREG_PLUGIN_API = 3


@hookimpl
def register_parts(register):
    register("vq", VQEncoder)
    register("uniform", UniformCodes)


@hookimpl
def register_presets(register):
    register(
        "vq",
        "VQ-VAE: conv encoder over a code map, EMA codebook, uniform prior over codes",
        encoder="vq", decoder="conv", prior="uniform", likelihood="dlogistic",
    )
