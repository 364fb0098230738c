"""The built-in metrics, registered through ``register_metrics`` exactly as a third party's
metrics are. They are the defaults every ``vaereg eval`` scores (``--metrics`` adds others),
and each reduces what the run's one evaluation pass (``vaereg_harness.metrics.passes``) and one
shared draw of samples produce, rather than running the model again.

``run`` resolves the metrics of a run and scores it; ``samples`` draws from a model."""

from vaereg import hookimpl
from vaereg_harness.metrics.latents import ActiveUnits, Codebook, KLPerLevel
from vaereg_harness.metrics.likelihood import NLL, NegativeELBO
from vaereg_harness.metrics.sample_quality import FID, ClassAccuracy
from vaereg_harness.metrics.timings import Timings

VAEREG_PLUGIN_API = 3

#: name -> metric, in the order their columns are stored and shown; every one is a default.
BUILT_IN = {
    "elbo": NegativeELBO,
    "nll": NLL,
    "kl-per-level": KLPerLevel,
    "active-units": ActiveUnits,
    "codebook": Codebook,
    "fid": FID,
    "class-accuracy": ClassAccuracy,
    "timings": Timings,
}
#: The metrics every run scores, before those ``--metrics`` adds.
DEFAULTS = tuple(BUILT_IN)


@hookimpl
def register_metrics(register):
    for name, cls in BUILT_IN.items():
        register(name, cls)
