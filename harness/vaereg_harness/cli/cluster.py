"""``vaereg sweep``, ``vaereg status`` and ``vaereg search``: an experiment file's points run by
an executor (this machine, or a Slurm array), their states, and Optuna studies over its ranges
(``vaereg_harness.cluster``; the ``cluster`` extra)."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import sys
import time
from pathlib import Path

import click

from vaereg import UsageError
from vaereg_harness.cli.app import main
from vaereg_harness.cli.options import UserPath
from vaereg_harness.cluster import EXECUTORS


def needs_cluster_extra() -> None:
    missing = [name for name in ("submitit", "optuna") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"this command needs {' and '.join(missing)}: pip install 'vaereg[cluster]'")


def config_option(command):
    return click.option("--config", "config_file", type=UserPath(path_type=Path, dir_okay=False, exists=True),
                        required=True, help="The experiment file (TOML): vaereg eval's keys, lists to sweep, "
                                            "and the executor, [slurm] and [search] tables.")(command)


def max_runs_option(command):
    return click.option("--max-runs", type=click.IntRange(min=1), default=1000, show_default=True,
                        help="The most points one command starts; a larger sweep is refused before anything "
                             "runs.")(command)


def read_planned(config_file: Path, max_runs: int):
    """The file's sweep (its [slurm] table checked, whatever the executor) and every point
    planned (checked, keyed, its folder named)."""
    from vaereg_harness.cluster.executors import slurm_options
    from vaereg_harness.cluster.sweep import plan_points, read

    sweep = read(config_file, main.commands["eval"], max_runs=max_runs)
    slurm_options(sweep.slurm, f"--config {config_file}")
    planned = plan_points(sweep.points, main)
    return sweep, planned, sweep.folder(planned[0])


def status_table(statuses) -> str:
    rows = [("point", "state", "detail", "log"), *((s.label, s.state, s.detail, s.log or "") for s in statuses)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)), r[3]]).rstrip()
                     for r in rows)


def executor_options(what: str):
    """``--executor``, ``--parallel`` and ``--wait`` for the commands that run ``what`` (points, trials)."""
    def decorate(command):
        for option in reversed([
            click.option("--executor", type=click.Choice(EXECUTORS), default=None,
                         help=f"Where the {what} run [the file's executor, else local]."),
            click.option("--parallel", type=click.IntRange(min=1), default=None,
                         help=f"local: {what} run at once, the cores divided among them "
                              f"[the file's parallel, else 1]."),
            click.option("--wait", is_flag=True, help=f"slurm: wait for every one of the {what} to end and show how "
                                                      f"each ended."),
        ]):
            command = option(command)
        return command
    return decorate


@main.command("sweep")
@config_option
@executor_options("points")
@click.option("--dry-run", is_flag=True, help="Plan and show every point and its state; submit nothing.")
@max_runs_option
def sweep_command(config_file, executor, parallel, wait, dry_run, max_runs):
    """Run every point of an experiment file (the product of the options it lists), each as one
    job: on this machine (local) or as one task of a Slurm job array (slurm). A point whose row
    is already in the results store is not run again; a stopped one resumes from its
    checkpoint; a failed one is reported with its log and does not stop the others."""
    needs_cluster_extra()
    from vaereg_harness.cluster import executors
    from vaereg_harness.cluster.jobs import PointJob, write_state
    from vaereg_harness.cluster.status import state_file, status, statuses

    sweep, planned, sweep_dir = read_planned(config_file, max_runs)
    executor = executor or sweep.executor or "local"
    todo = [p for p, s in zip(planned, statuses(planned, sweep_dir), strict=True) if s.state != "done"]
    click.echo(f"{len(planned)} point(s) in {config_file}: {len(planned) - len(todo)} already recorded, "
               f"{len(todo)} to run ({executor})", err=True)
    if dry_run or not todo:
        click.echo(status_table(statuses(planned, sweep_dir)))
        return
    if executor == "slurm":
        options, extra = executors.slurm_options(sweep.slurm, f"--config {config_file}")
        runner = executors.slurm_executor(sweep_dir / "jobs", options, extra)
        with runner.batch():
            jobs = [runner.submit(PointJob(p.args, state_file(sweep_dir, p))) for p in todo]
        for p, job in zip(todo, jobs, strict=True):
            write_state(state_file(sweep_dir, p), state="submitted", executor="slurm", job=job.job_id,
                        log=str(job.paths.stderr), submitted=time.time())
        click.echo(f"submitted {len(jobs)} point(s) as Slurm job array {jobs[0].job_id.split('_')[0]}; logs in "
                   f"{sweep_dir / 'jobs'}/; see each point with: vaereg status --config {config_file}", err=True)
        if not wait:
            return
        while not all(job.done() for job in jobs):
            time.sleep(1.0)
    else:
        parallel = parallel or sweep.parallel or 1
        threads = executors.threads_per_point(parallel)
        runner = executors.local_executor(sweep_dir / "jobs")
        jobs = []
        for p in todo:
            args = p.args if "threads" in p.point.values else [*p.args, "--threads", str(threads)]
            write_state(state_file(sweep_dir, p), state="submitted", executor="local", host=socket.gethostname(),
                        submitted=time.time())
            jobs.append(PointJob(args, state_file(sweep_dir, p)))
        for index in executors.run_local(runner, jobs, parallel):
            ended = status(todo[index], sweep_dir)
            where = f"; log: {ended.log}" if ended.state == "failed" and ended.log else ""
            click.echo(f"{ended.state}: {ended.label} ({ended.detail}){where}", err=True)
    states = statuses(planned, sweep_dir)
    click.echo(status_table(states))
    failed = sum(s.state == "failed" for s in states)
    if failed:
        click.echo(f"Error: {failed} of {len(states)} point(s) failed; each failed point's log is listed above; "
                   f"run the same command again to retry them (finished points are not run again)", err=True)
        sys.exit(1)


@main.command("status")
@config_option
@max_runs_option
def status_command(config_file, max_runs):
    """Show each point of an experiment file's sweep: pending, running, done or failed (with
    its log)."""
    needs_cluster_extra()
    from vaereg_harness.cluster.status import statuses

    sweep, planned, sweep_dir = read_planned(config_file, max_runs)
    if sweep.search:  # a search file: its study's trials, and each trial's point
        search_status(config_file, sweep, planned[0].results, sweep_dir)
        return
    states = statuses(planned, sweep_dir)
    click.echo(status_table(states))
    counts = {state: sum(s.state == state for s in states) for state in ("done", "running", "pending", "failed")}
    click.echo(", ".join(f"{n} {state}" for state, n in counts.items()), err=True)


def search_status(config_file: Path, sweep, results: Path, sweep_dir: Path) -> None:
    """``vaereg status`` of a search file: the study's trials, and the state of each trial's run."""
    import optuna

    from vaereg_harness.cluster.jobs import read_state
    from vaereg_harness.cluster.search import read_search
    from vaereg_harness.store.studies import studies_file

    spec = read_search(config_file, sweep.search, results, True)
    if not spec.options.storage and not studies_file(results).exists():
        click.echo(f"study {spec.study!r}: no trial yet (run vaereg search --config {config_file})", err=True)
        return
    try:
        study = optuna.load_study(study_name=spec.study, storage=spec.storage)
    except KeyError:
        click.echo(f"study {spec.study!r}: no trial yet (run vaereg search --config {config_file})", err=True)
        return
    click.echo(study_table(study, spec.options.metric))
    for trial in study.get_trials(deepcopy=False):
        state = read_state(sweep_dir / "points" / f"{trial.user_attrs.get('run_key')}.json") or {}
        if state.get("state") in ("failed", "stopped"):
            click.echo(f"trial {trial.number}: {state.get('message', '')}; log: {state.get('log')}", err=True)


@main.command("search")
@config_option
@executor_options("trials")
@click.option("--dry-run", is_flag=True, help="Check the file and every end of its ranges, show the study so far; "
                                              "run no trial.")
def search_command(config_file, executor, parallel, wait, dry_run):
    """Run an Optuna study over the ranges in the experiment file's [search.space]: each trial
    one run (through the same executors as vaereg sweep), scored by its row's [search] metric in
    the direction the metric declares, pruned on its per-epoch validation ELBO. The study is
    stored next to the results (or at [search] storage); a rerun adds only the trials missing."""
    needs_cluster_extra()
    import optuna

    from vaereg_harness.cluster import executors, search, trials
    from vaereg_harness.cluster.jobs import write_state
    from vaereg_harness.cluster.status import state_file
    from vaereg_harness.cluster.sweep import plan_points, read, results_of
    from vaereg_harness.store.studies import studies_file

    sweep = read(config_file, main.commands["eval"], max_runs=1_000_000)
    if len(sweep.points) > 1:
        raise UsageError(f"--config {config_file}: a search gives each option one value ({sweep.points[1].label} is "
                         f"a list); put the ranges to search in [search.space]")
    slurm, _ = executors.slurm_options(sweep.slurm, f"--config {config_file}")
    (base,) = sweep.points
    executor = executor or sweep.executor or "local"
    spec = search.read_search(config_file, sweep.search, results_of(base, main.commands["eval"]),
                              "validation_images" in base.values)
    if executor == "slurm" and slurm.nodes * slurm.tasks_per_node > 1 and spec.options.pruner != "none":
        raise UsageError(f"--config {config_file}: a trial of several processes cannot be pruned (rank 0 alone "
                         f"sees the pruner); set pruner = \"none\" in [search], or one task per trial")
    corners = plan_points(search.corners(base, spec.space), main)
    results, sweep_dir = corners[0].results, sweep.folder(corners[0])
    if dry_run:
        click.echo(f"{spec.direction} {spec.options.metric} over {', '.join(spec.space)}; study {spec.study!r} in "
                   f"{spec.storage}", err=True)
        if studies_file(results).exists() or spec.options.storage:
            with contextlib.suppress(KeyError):  # no such study yet
                click.echo(study_table(optuna.load_study(study_name=spec.study, storage=spec.storage),
                                       spec.options.metric))
        return
    study = search.open_study(spec)
    finished = sum(t.state in search.FINISHED for t in study.get_trials(deepcopy=False))
    wanted = max(spec.options.trials - finished, 0)
    parallel = parallel or sweep.parallel or 1
    threads = None if executor == "slurm" or "threads" in base.values else executors.threads_per_point(parallel)
    click.echo(f"study {spec.study!r} in {spec.storage}: {finished} trial(s) finished, {wanted} to run ({executor}); "
               f"{spec.direction} {spec.options.metric}", err=True)

    def trial_jobs():
        for _ in range(wanted):
            trial = study.ask(spec.space)
            (planned,) = plan_points([search.point_of(base, trial.params)], main)
            trial.set_user_attr("run_key", planned.key)
            trial.set_user_attr("run_dir", str(planned.folder))
            ref = trials.TrialRef(spec.storage, spec.study, trial._trial_id, trial.number, spec.pruner)
            args = planned.args if threads is None else [*planned.args, "--threads", str(threads)]
            job = search.TrialJob(planned, args, state_file(sweep_dir, planned), ref, spec.options.metric)
            write_state(state_file(sweep_dir, planned), state="submitted", executor=executor,
                        host=socket.gethostname(), trial=trial.number)
            yield job

    if executor == "slurm":
        options, extra = executors.slurm_options(sweep.slurm, f"--config {config_file}")
        runner = executors.slurm_executor(sweep_dir / "jobs", options, extra)
        jobs = list(trial_jobs())
        with runner.batch():
            submitted = [runner.submit(job) for job in jobs]
        click.echo(f"submitted {len(jobs)} trial(s) as a Slurm job array; logs in {sweep_dir / 'jobs'}/", err=True)
        if not wait:
            return
        while not all(job.done() for job in submitted):
            time.sleep(1.0)
    else:
        for _ in executors.run_local(executors.local_executor(sweep_dir / "jobs"), trial_jobs(), parallel):
            pass
    study = optuna.load_study(study_name=spec.study, storage=spec.storage)
    click.echo(study_table(study, spec.options.metric))


def study_table(study, metric: str) -> str:
    """Every trial of ``study``: its number, state, value and parameters; the best marked."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial.number if complete else None
    lines = [f"{'':1} {'trial':>5}  {'state':8}  {metric:>12}  parameters"]
    for t in study.get_trials(deepcopy=False):
        value = f"{t.value:.4f}" if t.state == optuna.trial.TrialState.COMPLETE else "-"
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
        lines.append(f"{'*' if t.number == best else '':1} {t.number:>5}  {t.state.name.lower():8}  {value:>12}  "
                     f"{params}")
    if best is not None:
        lines.append(f"* best: trial {best}, run folder {study.best_trial.user_attrs.get('run_dir')}")
    return "\n".join(lines)
