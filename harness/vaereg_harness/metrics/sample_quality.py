"""How good the model's samples are: FID against the test split, with its protocol and floor,
and how often a conditional sample lands in its class. Both read the run's one shared draw of
samples; the FID protocol (extractor, cache) is the harness's (``vaereg_harness.metrics.fid``)."""

from __future__ import annotations

import time

from vaereg.combo import Combo
from vaereg.data import Dataset
from vaereg.metrics import Column, Metric
from vaereg_harness.metrics.fid import FIDProtocol
from vaereg_harness.metrics.scoring import RunScoring


def protocol_of(scoring: RunScoring) -> FIDProtocol | str | None:
    """The run's FID protocol; None outside a harness run (the conformance kit's core ``Scoring``
    has no protocol), where FID is not asked."""
    return getattr(scoring, "fid", None)


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
        return scoring.config.fid_samples if isinstance(protocol_of(scoring), FIDProtocol) else 0

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
        return scoring.config.fid_samples if isinstance(protocol_of(scoring), FIDProtocol) else 0

    def compute(self, scoring: RunScoring) -> dict[str, int | float | str | None]:
        protocol = protocol_of(scoring)
        if not isinstance(protocol, FIDProtocol):
            return {}
        images, labels = scoring.samples(scoring.config.fid_samples)
        return {"condition_accuracy": protocol.label_accuracy(images, labels)}
