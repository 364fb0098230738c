"""Hierarchical parts: a ladder VAE (Markov Gaussian hierarchy) and two-level VQ-VAE-2 codes."""

from vaereg import hookimpl
from vaereg.topdown import TopDownPosterior, walk_kl
from vaereg_hierarchical.ladder import LadderEncoder, LadderPrior
from vaereg_hierarchical.vq2 import VQ2Decoder, VQ2Encoder

VAEREG_PLUGIN_API = 3


@hookimpl
def register_parts(register):
    register("hierarchical", LadderEncoder)
    register("vq2", VQ2Encoder)
    register("vq2", VQ2Decoder)


@hookimpl
def register_kl(register):
    register(TopDownPosterior, LadderPrior, walk_kl)


@hookimpl
def register_presets(register):
    register(
        "hierarchical",
        "Ladder VAE: Markov Gaussian hierarchy, top-down inference sharing the prior's path",
        encoder="hierarchical", likelihood="dlogistic",
    )
    register(
        "vq2",
        "VQ-VAE-2 codes: a top and a bottom code map (the bottom encoder sees the top codes), "
        "uniform prior; add pixelcnn for a PixelCNN per level",
        encoder="vq2", decoder="vq2", prior="uniform", likelihood="dlogistic",
    )
