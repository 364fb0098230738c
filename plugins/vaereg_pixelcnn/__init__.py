"""Gated PixelCNN parts: a prior over code maps and an autoregressive likelihood over pixels.
Which role ``pixelcnn`` takes in a combo follows from the latent: over a discrete latent it is
the prior (``vq+pixelcnn``), over a continuous one the likelihood (``gaussian+pixelcnn``)."""

from vaereg import hookimpl
from vaereg_pixelcnn.parts import PixelCNNLikelihood, PixelCNNPrior


@hookimpl
def register_parts(register):
    register("pixelcnn", PixelCNNPrior)
    register("pixelcnn", PixelCNNLikelihood)
