"""A Poincare-ball latent (Mathieu et al. 2019, "Continuous Hierarchical Representations with
Poincare Variational Auto-Encoders"): the ``poincare`` encoder's wrapped normal posterior, the
``wrapped-normal`` prior N_W(0, sigma^2 I) on the same ball (Monte-Carlo KL), and the ``pvae``
preset. The decoder receives z in the ball's coordinates; Mathieu et al.'s first decoder layer
is a gyroplane layer, here the ordinary conv decoder reads the coordinates directly."""

from vaereg import hookimpl
from vaereg_hyperbolic.encoder import PoincareEncoder
from vaereg_hyperbolic.wrapped import WrappedNormalPrior

VAEREG_PLUGIN_API = 3


@hookimpl
def register_parts(register):
    register("poincare", PoincareEncoder)
    register("wrapped-normal", WrappedNormalPrior)


@hookimpl
def register_presets(register):
    register(
        "pvae",
        "P-VAE (Mathieu et al. 2019, Continuous Hierarchical Representations with Poincare VAEs): wrapped "
        "normal posterior and prior on the Poincare ball, conv decoder on ball coordinates",
        encoder="poincare", decoder="conv", prior="wrapped-normal", likelihood="dlogistic",
    )
