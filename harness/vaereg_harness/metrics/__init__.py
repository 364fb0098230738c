"""The built-in metrics, registered through ``register_metrics`` exactly as a third party's
metrics are. The defaults every ``vaereg eval`` scores reduce what the run's one evaluation
pass (``vaereg_harness.metrics.passes``) and one shared draw of samples produce, rather than
running the model again; those ``--metrics`` adds (mutual information, disentanglement) encode
the images they need themselves.

``run`` resolves the metrics of a run and scores it; ``samples`` draws from a model."""

from vaereg import hookimpl
from vaereg_harness.metrics.disentanglement import MIG, SAP, BetaVAEScore, DCIMetric, FactorVAEScore
from vaereg_harness.metrics.information import MutualInformation
from vaereg_harness.metrics.latents import ActiveUnits, Codebook, KLPerLevel, RateDistortion
from vaereg_harness.metrics.likelihood import NLL, NegativeELBO
from vaereg_harness.metrics.sample_quality import FID, KID, ClassAccuracy, ClassifierScore, PrecisionRecall
from vaereg_harness.metrics.timings import Timings

VAEREG_PLUGIN_API = 3

#: The metrics every run scores, before those ``--metrics`` adds: name -> metric, in the order
#: their columns are stored and shown.
SCORED_BY_DEFAULT = {
    "elbo": NegativeELBO,
    "nll": NLL,
    "rate-distortion": RateDistortion,
    "kl-per-level": KLPerLevel,
    "active-units": ActiveUnits,
    "codebook": Codebook,
    "fid": FID,
    "kid": KID,
    "prc": PrecisionRecall,
    "classifier-score": ClassifierScore,
    "class-accuracy": ClassAccuracy,
    "timings": Timings,
}
#: Metrics a run scores when ``--metrics`` names them: they cost more (I(x; z) is quadratic in
#: the test images) or need what few data sets have (ground-truth factors).
ON_REQUEST = {
    "mutual-information": MutualInformation,
    "mig": MIG,
    "sap": SAP,
    "dci": DCIMetric,
    "betavae": BetaVAEScore,
    "factorvae": FactorVAEScore,
}
BUILT_IN = {**SCORED_BY_DEFAULT, **ON_REQUEST}
DEFAULTS = tuple(SCORED_BY_DEFAULT)


@hookimpl
def register_metrics(register):
    for name, cls in BUILT_IN.items():
        register(name, cls)
