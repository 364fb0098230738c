"""Learned priors over a latent vector: a learnable mixture of Gaussians (``mog``), the
VampPrior (``vamp``), and a Gaussian mixture fitted by EM to the frozen encoder's aggregate
posterior after the autoencoder (``gmm``)."""

from vaereg import hookimpl
from vaereg_mixtures.gmm import FittedMixture
from vaereg_mixtures.mog import LearnedMixture
from vaereg_mixtures.vamp import VampPrior

VAEREG_PLUGIN_API = 3


@hookimpl
def register_parts(register):
    register("mog", LearnedMixture)
    register("vamp", VampPrior)
    register("gmm", FittedMixture)
