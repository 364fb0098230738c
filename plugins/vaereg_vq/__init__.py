"""VQ-VAE parts: a vector-quantizing encoder with an EMA codebook and a uniform prior over codes."""

from vaereg import hookimpl
from vaereg_vq.encoder import VQEncoder
from vaereg_vq.prior import UniformCodes


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
