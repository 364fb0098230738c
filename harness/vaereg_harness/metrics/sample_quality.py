"""How good the model's samples are: FID against the test split, with its protocol and floor;
KID and precision/recall against the test split; a classifier score (the inception score's
formula on vaereg's classifier); and how often a conditional sample lands in its class. All read
the run's one shared draw of samples and reduce one extraction of its features (the FID
protocol's, ``vaereg_harness.metrics.fid``) with torch-fidelity's own reductions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from torch import Tensor
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from torch_fidelity.metric_prc import (
    KEY_METRIC_F_SCORE,
    KEY_METRIC_PRECISION,
    KEY_METRIC_RECALL,
    prc_features_to_metric,
)

from vaereg.combo import Combo
from vaereg.config import Range
from vaereg.data import Dataset
from vaereg.metrics import Column, Metric, Scoring
from vaereg_harness.launch.distributed import stream_seed
from vaereg_harness.metrics.classifier import EXTRACTOR
from vaereg_harness.metrics.fid import FIDProtocol
from vaereg_harness.metrics.scoring import RunScoring


def protocol_of(scoring: RunScoring) -> FIDProtocol | str | None:
    """The run's FID protocol; None outside a harness run (the conformance kit's core ``Scoring``
    has no protocol), where FID is not asked."""
    return getattr(scoring, "fid", None)


def fid_sample_count(scoring: Scoring) -> int:
    """``--fid-samples`` where the run has an FID protocol, else none."""
    return scoring.config.fid_samples if isinstance(protocol_of(scoring), FIDProtocol) else 0


def sample_features(scoring: Scoring, metric: str) -> tuple[FIDProtocol, dict[str, Tensor]] | str:
    """The FID protocol and its features of the run's ``--fid-samples`` samples (extracted once
    for every metric), or a note saying why ``metric`` has none."""
    protocol = protocol_of(scoring)
    if protocol is None:
        return f"no {metric}: FID is off (--no-fid) and {metric} reduces the features FID extracts"
    if isinstance(protocol, str):
        return f"no {metric}: {protocol}"
    return protocol, protocol.features(scoring.samples(scoring.config.fid_samples)[0])


class FID(Metric):
    """FID (Heusel et al. 2017) of ``--fid-samples`` samples against the test split, with the
    protocol that makes it comparable: extractor, reference and the floor FID(train, test)."""

    columns = (
        Column("fid", float, "", False, "Frechet distance between the samples' and the test split's features",
               heading="FID", format=".2f"),
        Column("fid_extractor", str, "", None, "feature extractor: torch-fidelity name:weight hash", shown=False),
        Column("fid_samples", int, "images", None, "samples scored", shown=False),
        Column("fid_reference", str, "", None, "reference images, split:size", shown=False),
        Column("fid_floor", float, "", None, "FID(train split, test split) under the same extractor: what the data "
               "itself scores", heading="FID floor", format=".2f"),
        Column("fid_note", str, "", None, "why fid is null, when it is", shown=False),
        Column("fid_extractor_accuracy", float, "fraction", None, "the classifier extractor's accuracy on the test "
               "split (null under Inception)", shown=False),
        Column("fid_extractor_seconds", float, "s", None, "obtaining the extractor in this run (0 when cached)",
               shown=False),
        Column("fid_seconds", float, "s", None, "sampling and scoring FID (the floor included the first time)",
               shown=False),
    )

    def sample_count(self, scoring: RunScoring) -> int:
        return fid_sample_count(scoring)

    def compute(self, scoring: RunScoring) -> dict[str, int | float | str | None]:
        protocol = protocol_of(scoring)
        if not isinstance(protocol, FIDProtocol):
            return {"fid_note": protocol}  # why there is none, or None when FID was not asked
        began = time.perf_counter()
        n = scoring.config.fid_samples
        values = {"fid": protocol.score(scoring.samples(n)[0]), "fid_extractor": protocol.extractor.describe(),
                  "fid_samples": n, "fid_reference": protocol.reference, "fid_floor": protocol.floor,
                  "fid_extractor_accuracy": protocol.extractor.accuracy,
                  "fid_extractor_seconds": protocol.extractor.seconds}
        return {**values, "fid_seconds": scoring.sample_seconds + time.perf_counter() - began}


class ClassAccuracy(Metric):
    """How often the FID classifier puts a conditional sample in the class it was drawn for
    (null without the classifier extractor)."""

    columns = (
        Column("condition_accuracy", float, "fraction", True, "conditional samples the FID classifier puts in "
               "their class", heading="class acc", format=".3f", shown=False),
    )

    def mismatch(self, data: Dataset, combo: Combo) -> str | None:
        return None if data.spec.classes else "needs a model conditioned on labels (--condition label)"

    def sample_count(self, scoring: RunScoring) -> int:
        return fid_sample_count(scoring)

    def compute(self, scoring: RunScoring) -> dict[str, int | float | str | None]:
        protocol = protocol_of(scoring)
        if not isinstance(protocol, FIDProtocol):
            return {}
        images, labels = scoring.samples(scoring.config.fid_samples)
        return {"condition_accuracy": protocol.label_accuracy(images, labels)}


@dataclass
class KIDConfig:
    #: Random subsets the squared MMD is averaged over (torch-fidelity's ``kid_subsets``).
    subsets: Annotated[int, Range(1, None)] = 100
    #: Images a subset holds at most (Binkowski et al. 2018 and torch-fidelity: 1000); capped by
    #: the number of samples and of test images.
    subset_size: Annotated[int, Range(2, None)] = 1000


class KID(Metric):
    """KID (Binkowski et al. 2018, eq. 4): the unbiased squared MMD between the samples' and the
    test split's features under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged
    over random subsets; torch-fidelity's ``kid_features_to_metric`` on FID's features."""

    Config = KIDConfig
    columns = (
        Column("kid", float, "", False, "kernel inception distance: unbiased squared MMD (cubic polynomial kernel) "
               "between the samples' and the test split's FID features, mean over subsets", heading="KID"),
        Column("kid_std", float, "", None, "standard deviation of KID over its subsets", shown=False),
        Column("kid_subset_size", int, "images", None, "images in each KID subset: min(subset size, samples, "
               "test images)", shown=False),
        Column("kid_note", str, "", None, "why kid is null, when it is", shown=False),
    )

    def sample_count(self, scoring: RunScoring) -> int:
        return fid_sample_count(scoring)

    def compute(self, scoring: RunScoring) -> dict[str, int | float | str | None]:
        found = sample_features(scoring, "KID")
        if isinstance(found, str):
            return {"kid_note": found}
        protocol, features = found
        samples, reference = features[protocol.extractor.layer], protocol.split_features("test")
        size = min(self.config.subset_size, samples.shape[0], reference.shape[0])
        kid = kid_features_to_metric(samples, reference, kid_subsets=self.config.subsets, kid_subset_size=size,
                                     rng_seed=stream_seed(scoring.seed, "metric", "kid") % 2**32, verbose=False)
        return {"kid": kid[KEY_METRIC_KID_MEAN], "kid_std": kid[KEY_METRIC_KID_STD], "kid_subset_size": size}


@dataclass
class PRCConfig:
    #: k: a point's neighbourhood is the ball reaching its k-th nearest neighbour in its own set
    #: (Kynkaanniemi et al. 2019 and torch-fidelity: 3); capped below the smaller set's size.
    neighbourhood: Annotated[int, Range(1, None)] = 3


class PrecisionRecall(Metric):
    """Improved precision and recall (Kynkaanniemi et al. 2019, eqs. 1-3): precision is the
    fraction of samples inside the k-nearest-neighbour balls of the test split's features,
    recall the fraction of test images inside the samples' balls; torch-fidelity's
    ``prc_features_to_metric`` on FID's features."""

    Config = PRCConfig
    columns = (
        Column("precision", float, "fraction", True, "samples whose FID features fall within the k-NN manifold of "
               "the test split's (Kynkaanniemi et al. 2019)", heading="precision", format=".3f"),
        Column("recall", float, "fraction", True, "test images whose FID features fall within the k-NN manifold "
               "of the samples'", heading="recall", format=".3f"),
        Column("prc_f_score", float, "fraction", True, "harmonic mean of precision and recall", shown=False),
        Column("prc_neighbourhood", int, "", None, "k of the k-nearest-neighbour balls: min(k, smaller set - 1)",
               shown=False),
        Column("prc_note", str, "", None, "why precision and recall are null, when they are", shown=False),
    )

    def sample_count(self, scoring: RunScoring) -> int:
        return fid_sample_count(scoring)

    def compute(self, scoring: RunScoring) -> dict[str, int | float | str | None]:
        found = sample_features(scoring, "precision/recall")
        if isinstance(found, str):
            return {"prc_note": found}
        protocol, features = found
        samples, reference = features[protocol.extractor.layer], protocol.split_features("test")
        k = min(self.config.neighbourhood, samples.shape[0] - 1, reference.shape[0] - 1)  # k-th of the others
        prc = prc_features_to_metric(samples, reference, prc_neighborhood=k, save_cpu_ram=True, verbose=False)
        return {"precision": prc[KEY_METRIC_PRECISION], "recall": prc[KEY_METRIC_RECALL],
                "prc_f_score": prc[KEY_METRIC_F_SCORE], "prc_neighbourhood": k}


class ClassifierScore(Metric):
    """The inception score's formula (Salimans et al. 2016), exp(E_x KL(p(y|x) || p(y))), on the
    logits of vaereg's offline classifier rather than Inception's, with p(y) the mean of p(y|x)
    over all the samples (one split); torch-fidelity's ``isc_features_to_metric``. It lies in
    [1, classes]; not comparable to a published inception score."""

    columns = (
        Column("classifier_score", float, "", True, "the inception score's formula exp(E KL(p(y|x) || p(y))) on "
               "vaereg's offline classifier, not Inception: not comparable to published IS", heading="cls score",
               format=".2f"),
        Column("classifier_score_note", str, "", None, "why classifier_score is null, when it is", shown=False),
    )

    def sample_count(self, scoring: RunScoring) -> int:
        return fid_sample_count(scoring)

    def compute(self, scoring: RunScoring) -> dict[str, int | float | str | None]:
        protocol = protocol_of(scoring)
        if isinstance(protocol, FIDProtocol) and protocol.extractor.name != EXTRACTOR:
            return {"classifier_score_note": "no classifier score: FID's extractor is Inception, not vaereg's "
                                             "classifier (--fid-extractor classifier)"}
        found = sample_features(scoring, "classifier score")
        if isinstance(found, str):
            return {"classifier_score_note": found}
        return {"classifier_score": classifier_score(found[1]["logits"])}


def classifier_score(logits: Tensor) -> float:
    """exp(mean_x KL(softmax(logits_x) || mean_x softmax(logits_x))) over ``[n, classes]`` logits."""
    return isc_features_to_metric(logits, splits=1, shuffle=False)[KEY_METRIC_ISC_MEAN]
