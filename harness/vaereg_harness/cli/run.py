"""``vaereg eval`` and ``vaereg train``: every combo (once per seed) planned once into a ``Run``
(resolved, its metrics checked, its folder named), every distinct combo probed, the output
folders checked, all before any work starts; then each run is trained (and evaluated) through
the Python API and its row appended to the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from vaereg import UsageError
from vaereg.combo import GROUPS
from vaereg.parts import SLOTS
from vaereg.probe import probe_combo
from vaereg_harness.api import Run, RunConfig, build, evaluate_run, plan, train_run
from vaereg_harness.cli import experiment
from vaereg_harness.cli.app import main
from vaereg_harness.cli.options import UserPath, metric_list, run_options
from vaereg_harness.launch import distributed
from vaereg_harness.logs import logger_class
from vaereg_harness.metrics.fid import EXTRACTORS, default_cache_dir, protocol_for
from vaereg_harness.run.config import pick_device
from vaereg_harness.store.files import check_folder, make_folder
from vaereg_harness.store.leaderboard import format_table
from vaereg_harness.store.locks import run_folder_lock
from vaereg_harness.store.results import append_or_keep, recorded, recover_rows


def part_options(grouped: dict) -> dict:
    """The part options of ``--set``'s groups (the objective's, the data set's and the metrics'
    are taken elsewhere)."""
    groups = (*GROUPS, "dataset", "metric")
    unknown = set(grouped) - set(groups)
    if unknown:
        raise UsageError(f"--set group {sorted(unknown)[0]!r} is unknown; groups: {', '.join(groups)}")
    return {slot: values for slot, values in grouped.items() if slot in SLOTS}


def metric_options(given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``--set metric.NAME.OPTION=VALUE`` (group ``metric``, key ``NAME.OPTION``) as metric name ->
    option -> value."""
    options: dict[str, dict[str, Any]] = {}
    for key, value in given.items():
        name, dot, option = key.rpartition(".")
        if not dot or not name or not option:
            raise UsageError(f"--set metric.{key}: give metric.NAME.OPTION=VALUE, e.g. "
                             f"metric.active-units.rule=variance")
        options.setdefault(name, {})[option] = value
    return options


def planned(combos, data, grouped, configs: list[RunConfig], log: tuple[str, ...], folders: dict[str, Path],
            make: bool = True) -> list[Run]:
    """Every run, combo by combo and seed by seed, planned once (resolved, metrics checked,
    folder named under ``folders["out"]``); every distinct combo probed (``vaereg.probe``); the
    loggers and the output ``folders`` (option name -> path) checked, and made last (if
    ``make``), once everything passed."""
    for name in log:
        logger_class(name)
    options = part_options(grouped)
    runs = [plan(text, data, options, config, folders["out"]) for text in combos for config in configs]
    device = pick_device(configs[0].train.device)
    for run in {run.combo.text: run for run in runs}.values():
        probe_combo(run.combo, data, device)
    for option, path in folders.items():
        check_folder(path, f"--{option}")
    for option, path in folders.items() if make else ():
        make_folder(path, f"--{option}")
    return runs


def print_experiment(grouped, runs: list[Run]) -> list[Run]:
    """``--print-config``: the resolved experiment, then each run and its folder; returns the
    runs (to a caller in this process, such as a sweep planning its points)."""
    click.echo(experiment.resolved(click.get_current_context(), grouped), nl=False)
    click.echo(f"\n# {len(runs)} run(s):")
    for run in runs:
        click.echo(f"#   {run.combo.text} seed {run.config.train.seed}: {run.folder}")
    return runs


@main.command("eval")
@run_options
@click.option("--iw-samples", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Importance samples per test image for the NLL.")
@click.option("--iw-chunk", type=click.IntRange(min=1), default=128, show_default=True,
              help="Importance samples per forward pass (bounds memory).")
@click.option("--eval-images", type=click.IntRange(min=1), default=None,
              help="Score the NLL and ELBO on a fixed subset of this many test images (a seed-0 choice, "
                   "recorded in the row) [the whole test split].")
@click.option("--results", type=UserPath(path_type=Path), default=Path("vaereg-results"), show_default=True,
              help="Parquet dataset the rows are appended to.")
@click.option("--fid/--no-fid", default=True, show_default=True,
              help="FID of the samples against the test split (torch-fidelity).")
@click.option("--fid-samples", type=click.IntRange(min=2), default=1000, show_default=True,
              help="Samples drawn for FID.")
@click.option("--fid-extractor", type=click.Choice(EXTRACTORS), default="auto", show_default=True,
              help="FID features: Inception (its weights here, or fetched with --download), a classifier trained "
                   "on the data set's labels, or auto: Inception when its weights are here, else the classifier.")
@click.option("--inception-weights", type=UserPath(path_type=Path), default=None,
              help="torch-fidelity's Inception weights file; without it (and none in torch's cache) FID uses "
                   "a classifier trained on the data set's labels.")
@click.option("--cache-dir", type=UserPath(path_type=Path), default=None,
              help="Where feature extractors and reference statistics are cached [$VAEREG_CACHE or ~/.cache/vaereg].")
@click.option("--metrics", multiple=True, callback=metric_list, metavar="NAME[,NAME...]",
              help="Metrics to score besides the defaults (NLL, ELBO, FID, class accuracy, latent and codebook use, "
                   "timings): registered metric names, comma-separated or repeated.")
def eval_command(combos, data, train_configs, grouped, out, resume, quiet, log, print_config, iw_samples, iw_chunk,
                 eval_images, results, fid, fid_samples, fid_extractor, inception_weights, cache_dir, metrics):
    """Train every stage of each combo (once per seed), evaluate it on the test split (NLL, FID,
    and each metric --metrics adds), save sample and reconstruction grids in its run folder under
    --out and append a results row."""
    configs = [RunConfig(train=train, objective=grouped.get("objective", {}), iw_samples=iw_samples,
                         iw_chunk=iw_chunk, fid_samples=fid_samples, eval_images=eval_images, metrics=metrics,
                         metric_options=metric_options(grouped.get("metric", {})))
               for train in train_configs]
    runs = planned(combos, data, grouped, configs, log, {"out": out, "results": results}, make=not print_config)
    if print_config:
        return print_experiment(grouped, runs)
    writer = distributed.current().writer
    for added in recover_rows(results, out) if writer else ():
        click.echo(f"note: a row an earlier run could not record is now in {added}", err=True)
    protocol = None
    if fid:
        with distributed.rank_zero_first():  # rank 0 trains or fetches the extractor; the others read its cache
            protocol = protocol_for(data, cache_dir or default_cache_dir(), inception_weights, choice=fid_extractor,
                                    download=click.get_current_context().params["download"],
                                    device=pick_device(configs[0].train.device), progress=not quiet and writer)
    if isinstance(protocol, str) and writer:
        click.echo(f"note: {protocol}", err=True)
    rows, kept = [], []
    for run in runs:
        what = f"{run.combo.text} seed {run.config.train.seed}"
        with run_folder_lock(run.folder, what, quiet=quiet):  # an identical run in progress: wait, then look again
            existing = recorded(results, run.key, json.dumps(run.describe())) if writer else None
            if distributed.agree(existing is not None):  # rank 0 reads the store; every rank skips alike
                if writer:
                    click.echo(f"note: already recorded: {what} (run folder {run.folder}) in {results}/ with these "
                               f"settings; its row is in the table, not run again: change a setting, or remove "
                               f"its row, to run it again", err=True)
                    kept.append(existing)
                continue
            row = evaluate_run(run, fid=protocol, resume=resume, progress=not quiet, log=log, probed=True)
            if row is not None:
                append_or_keep(results, row)
                rows.append(row.as_dict())
    if writer:
        click.echo(format_table(kept + rows))
        click.echo(f"{len(rows)} row(s) appended to {results}/"
                   + (f"; {len(kept)} already recorded (shown, not run again)" if kept else ""))


@main.command("train")
@run_options
def train_command(combos, data, train_configs, grouped, out, resume, quiet, log, print_config):
    """Train every stage of each combo (once per seed) and write its checkpoint and metrics log
    (no evaluation)."""
    configs = [RunConfig(train=train, objective=grouped.get("objective", {})) for train in train_configs]
    runs = planned(combos, data, grouped, configs, log, {"out": out}, make=not print_config)
    if print_config:
        return print_experiment(grouped, runs)
    for run in runs:
        with run_folder_lock(run.folder, f"{run.combo.text} seed {run.config.train.seed}", quiet=quiet):
            _, path = train_run(build(run, probed=True), run, resume=resume, progress=not quiet, log=log)
        if distributed.current().writer:
            click.echo(f"{run.combo.text} seed {run.config.train.seed}: checkpoint {path}")
