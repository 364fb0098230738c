"""Normalizing flows: a masked autoregressive flow prior (``flow``, MAF) and an inverse
autoregressive flow posterior (encoder ``iaf``), both built on MADE conditioners; planar and
radial flow posteriors (encoders and presets ``planar`` and ``radial``) with amortised steps."""

from vaereg import hookimpl
from vaereg_flows.iaf import IAFEncoder
from vaereg_flows.maf import FlowPrior
from vaereg_flows.planar import PlanarEncoder
from vaereg_flows.radial import RadialEncoder

VAEREG_PLUGIN_API = 3


@hookimpl
def register_parts(register):
    register("flow", FlowPrior)
    register("iaf", IAFEncoder)
    register("planar", PlanarEncoder)
    register("radial", RadialEncoder)


@hookimpl
def register_presets(register):
    register("planar", "VAE with a planar-flow posterior (Rezende & Mohamed 2015, eq. 10-12), amortised steps",
             encoder="planar", decoder="conv", prior="normal", likelihood="dlogistic")
    register("radial", "VAE with a radial-flow posterior (Rezende & Mohamed 2015, eq. 14), amortised steps",
             encoder="radial", decoder="conv", prior="normal", likelihood="dlogistic")
