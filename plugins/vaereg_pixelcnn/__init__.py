"""Gated PixelCNN parts: a prior over code maps and an autoregressive likelihood over pixels.
Which role a bare ``pixelcnn`` takes in a combo follows from the latent: over codes it is the
prior (``vq+pixelcnn``), otherwise the likelihood (``gaussian+pixelcnn``). The likelihood
serves every latent: ``vq+likelihood=pixelcnn``, ``hierarchical+likelihood=pixelcnn``."""

from vaereg import hookimpl
from vaereg_pixelcnn.parts import PixelCNNLikelihood, PixelCNNPrior

VAEREG_PLUGIN_API = 3


@hookimpl
def register_parts(register):
    register("pixelcnn", PixelCNNPrior)
    register("pixelcnn", PixelCNNLikelihood)
