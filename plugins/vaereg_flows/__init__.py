"""Normalizing flows: a masked autoregressive flow prior (``flow``, MAF) and an inverse
autoregressive flow posterior (encoder ``iaf``), both built on MADE conditioners."""

from vaereg import hookimpl
from vaereg_flows.iaf import IAFEncoder
from vaereg_flows.maf import FlowPrior

VAEREG_PLUGIN_API = 3


@hookimpl
def register_parts(register):
    register("flow", FlowPrior)
    register("iaf", IAFEncoder)
