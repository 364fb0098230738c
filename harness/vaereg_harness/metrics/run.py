"""The metrics of a run: the defaults and those ``--metrics`` adds, checked before anything
trains; after training, one evaluation pass and one shared draw of samples on every process,
then each metric computed on the writer and its values checked against its declared columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vaereg import UsageError
from vaereg.combo import Combo
from vaereg.config import from_dict
from vaereg.data import Dataset
from vaereg.metrics import Metric, checked_values
from vaereg.model import VAE
from vaereg.registry import get_registry
from vaereg_harness.launch import distributed
from vaereg_harness.metrics import DEFAULTS
from vaereg_harness.metrics.passes import evaluation_pass
from vaereg_harness.metrics.samples import draw_samples
from vaereg_harness.metrics.scoring import RunScoring
from vaereg_harness.store.results import refused_metrics

if TYPE_CHECKING:
    from vaereg_harness.api import RunConfig
    from vaereg_harness.metrics.fid import FIDProtocol
    from vaereg_harness.run.trainer import StageReport


def metric_names(added: Sequence[str]) -> list[str]:
    """The metrics a run asks for: the defaults, then each added one not among them."""
    return list(dict.fromkeys((*DEFAULTS, *added)))


def build_metrics(added: Sequence[str], data: Dataset, combo: Combo,
                  options: dict[str, dict[str, Any]] | None = None) -> dict[str, Metric]:
    """Every metric a run of ``combo`` on ``data`` scores, by name, built with its ``options``
    (metric name -> option -> value; the defaults for the others). An unknown name, options for
    a metric the run does not score, or an added metric that cannot score this run, is a
    one-line usage error; a default that cannot (class accuracy without labels) is left out,
    and its columns stay null."""
    registry = get_registry()
    refused = refused_metrics()
    options = options or {}
    names = metric_names(added)
    stray = sorted(set(options) - set(names))
    if stray:
        raise UsageError(f"--set metric.{stray[0]}.*: {stray[0]!r} is not scored in this run; add --metrics "
                         f"{stray[0]}, or set options of: {', '.join(names)}")
    built = {}
    for name in names:
        asked = name in added
        if not asked and name not in registry.entries["metric"]:
            continue  # vaereg's built-in metrics are disabled
        entry = registry.get("metric", name)
        if name in refused:
            raise UsageError(f"--metrics {name}: {refused[name]}")
        metric = entry.cls(from_dict(entry.cls.Config, options.get(name, {}), what=f"metric {name!r}"))
        why = metric.mismatch(data, combo)
        if why is not None and asked:
            raise UsageError(f"--metrics {name} cannot score {combo.text} on {data.spec.name}: {why}")
        if why is None:
            built[name] = metric
    return built


def score_run(model: VAE, metrics: dict[str, Metric], data: Dataset, scored: Dataset, config: RunConfig, *,
              reports: list[StageReport], fid: FIDProtocol | str | None, progress: bool) -> dict[str, Any]:
    """Score the trained ``model`` with the run's metrics over the test images of ``scored``:
    the evaluation pass and the shared draw of samples on every process, then each metric on
    the writer. Returns column -> value on the writer, nothing on the other ranks."""
    seed = config.train.seed
    evaluation = evaluation_pass(model, scored, config.iw_samples, config.iw_chunk, progress, seed=seed)
    scoring = RunScoring(model=model, data=data, test=scored, device=next(model.parameters()).device, seed=seed,
                         evaluation=evaluation, draw=lambda n: draw_samples(model, data, n, seed=seed),
                         config=config, reports=reports, fid=fid)
    scoring.sample_count = max((metric.sample_count(scoring) for metric in metrics.values()), default=0)
    if scoring.sample_count:
        scoring.samples(scoring.sample_count)  # every rank draws its share of the one draw
    if not distributed.current().writer:
        return {}
    values: dict[str, Any] = {}
    for name, metric in metrics.items():
        values.update(checked_values(name, metric, metric.compute(scoring)))
    return values
