"""NVAE parts: one coupled module fills the encoder, prior and decoder slots."""

from vaereg import hookimpl
from vaereg.topdown import walk_kl
from vaereg_nvae.model import NVAEEncoder, NVAEPosterior, NVAEPrior

VAEREG_PLUGIN_API = 3


@hookimpl
def register_parts(register):
    register("nvae", NVAEEncoder)


@hookimpl
def register_kl(register):
    register(NVAEPosterior, NVAEPrior, walk_kl)


@hookimpl
def register_presets(register):
    register(
        "nvae",
        "NVAE: residual cells, groups of latent maps per scale, residual-normal posterior, "
        "spectral regularisation, KL warm-up and balancing",
        encoder="nvae", likelihood="dlogistic",
    )
