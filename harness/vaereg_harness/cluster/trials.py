"""A search's trial as its run sees it: the trial a job runs (``current``), and the ``optuna``
tracker that reports each epoch's validation ELBO to it and stops the run when the study's
pruner says so. Optuna is imported only when a trial runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from vaereg import UsageError, VaeregError
from vaereg_harness.logs import Logger, Record


@dataclass(frozen=True)
class TrialRef:
    """Where a trial lives: its study's ``storage`` URL and ``study`` name, its id and number,
    and the study's pruner (Optuna does not store it): ``"median"`` with its startup trials and
    warm-up epochs, or ``"none"``."""

    storage: str
    study: str
    trial_id: int
    number: int
    pruner: tuple[str, int, int] = ("none", 0, 0)


def make_pruner(kind: str, startup_trials: int, warmup_epochs: int) -> Any:
    """Optuna's pruner of that kind: ``MedianPruner`` (prune a trial whose best value so far is
    worse than the median of finished trials' at the same epoch) or none."""
    import optuna

    if kind == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)


#: The trial this process runs (set by the search's job before its run starts), or None.
current: TrialRef | None = None


class TrialPruned(VaeregError):
    """The study's pruner stopped this trial; the study records it as pruned."""


class TrialReporter(Logger):
    """``--log optuna``: reports each epoch's ``validation_elbo`` to the running trial (as its
    intermediate value at that epoch) and stops the run when the pruner prunes the trial."""

    def __init__(self, folder: Path, config: dict[str, Any]):
        if current is None:
            raise UsageError("--log optuna reports to a trial of vaereg search and runs only inside one; "
                             "run vaereg search --config FILE")
        import optuna

        self.ref = current
        self.study = optuna.load_study(study_name=current.study, storage=current.storage,
                                       pruner=make_pruner(*current.pruner))
        self.trial = optuna.trial.Trial(self.study, current.trial_id)

    def log(self, record: Record, samples: Callable[[], Tensor]) -> None:
        value = record.get("validation_elbo")
        if value is None:
            return
        epoch = int(record["epoch"])
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            import optuna

            self.study.tell(self.ref.number, state=optuna.trial.TrialState.PRUNED)
            raise TrialPruned(f"trial {self.ref.number} of study {self.ref.study!r} pruned after epoch {epoch}: "
                              f"its validation ELBO {value:.3f} is worse than the pruner allows at that epoch")
