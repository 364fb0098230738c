"""What the harness's built-in metrics receive: the core ``Scoring`` plus the run's settings,
its training reports and its FID protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vaereg.metrics import Scoring

if TYPE_CHECKING:
    from vaereg_harness.api import RunConfig
    from vaereg_harness.metrics.fid import FIDProtocol
    from vaereg_harness.run.trainer import StageReport


@dataclass(kw_only=True)
class RunScoring(Scoring):
    """``Scoring`` for a run of the harness. A third-party metric may read these fields too,
    but only ``Scoring``'s are the plugin contract."""

    #: Everything the run was asked for: ``iw_samples``, ``fid_samples``, ``metrics``, training.
    config: RunConfig
    #: One report per training stage: its name, seconds and images seen.
    reports: list[StageReport]
    #: How FID is computed, or a note saying why there is none, or None when it was not asked.
    fid: FIDProtocol | str | None = None
