"""The ``vaereg`` command line."""

from __future__ import annotations

import json
import os
import re
import sys
import typing
import warnings
from functools import wraps
from pathlib import Path

import click
import torch

from vaereg import PLUGIN_API, UsageError, VaeregError
from vaereg.combo import DEFAULT_OBJECTIVE, GROUPS, resolve
from vaereg.config import field_types, from_dict, to_dict
from vaereg.hookspecs import SUPPORTED_APIS
from vaereg.parts import SLOTS
from vaereg.probe import probe_combo
from vaereg.registry import PluginLoadWarning, get_registry
from vaereg_harness import checkpoint, distributed, experiment, threads
from vaereg_harness.api import RunConfig, create_model, evaluate_combo, load_data, run_dir, run_key, train_model
from vaereg_harness.data import dataset_names
from vaereg_harness.fid import EXTRACTORS, default_cache_dir, protocol_for
from vaereg_harness.files import check_folder, check_path_name, make_folder
from vaereg_harness.images import save_grid
from vaereg_harness.leaderboard import format_table, sort_key
from vaereg_harness.logs import logger_class, loggers
from vaereg_harness.metrics.run import build_metrics
from vaereg_harness.results import append_or_keep, read_results, recorded, recover_rows
from vaereg_harness.train import TrainConfig, pick_device

RUN_COMMANDS = ("eval", "train")


def show_plugin_note(message, category, filename, lineno, file=None, line=None):
    """A skipped or deprecated plugin is one line on stderr, not a warning with its source."""
    if issubclass(category, PluginLoadWarning):
        click.echo(f"note: {message}", err=True)
    else:
        default_showwarning(message, category, filename, lineno, file, line)


default_showwarning = warnings.showwarning
warnings.showwarning = show_plugin_note


class Group(click.Group):
    """Turns vaereg's own errors into one-line messages: exit 2 for usage errors, 1 otherwise.
    Under torchrun a message names the rank it comes from, and the process group is left at
    the end."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise click.UsageError(ranked(str(exc)), ctx) from None
        except VaeregError as exc:
            raise click.ClickException(ranked(str(exc))) from None
        except RuntimeError as exc:
            if not distributed.lost_contact(exc):
                raise
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise click.ClickException(ranked(
                f"lost contact with another rank of the job ({first}); torchrun's summary names the rank that "
                f"failed; run again with --resume to continue from the last checkpoint")) from None
        except OSError as exc:  # the file system refused: one line naming the path, never a traceback
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(ranked(f"{where}{exc.strerror or exc}")) from None
        finally:
            distributed.stop()


def ranked(message: str) -> str:
    world = distributed.current()
    return f"rank {world.rank}: {message}" if world.size > 1 else message


class UserPath(click.Path):
    """A path option; a name too long for the file system is a usage error here."""

    def convert(self, value, param, ctx):
        try:
            check_path_name(os.fspath(value), "")
        except UsageError as exc:
            self.fail(str(exc).strip(), param, ctx)
        return super().convert(value, param, ctx)


class DatasetOption(click.Option):
    """``--dataset``, whose help lists the registered data sets (read when the help is shown)."""

    def get_help_record(self, ctx):
        self.help = (f"One of {dataset_names()}; a plugin may register more. --set dataset.NAME=VALUE sets its "
                     f"options.")
        return super().get_help_record(ctx)


def thread_count(_ctx, _param, value: str | int) -> int | None:
    if value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a whole number of threads nor 'auto'") from None


def run_options(command):
    """Options shared by ``train`` and ``eval``."""
    options = [
        click.option("--config", "config_file", type=UserPath(path_type=Path, dir_okay=False), is_eager=True,
                     expose_value=False, callback=read_experiment,
                     help="An experiment file (TOML): keys are the long options (combo, seed, epochs, lr, ...; "
                          "lists of combos and seeds sweep) and [set.GROUP] tables. Options given here override it."),
        click.option("--print-config", is_flag=True,
                     help="Print the resolved experiment as TOML (readable by --config) and its run folders; "
                          "run nothing."),
        click.option("--combo", "combos", multiple=True, required=True,
                     help="A '+'-separated combo: gaussian, vq+pixelcnn, gaussian+likelihood=bernoulli. Repeatable."),
        click.option("--dataset", cls=DatasetOption, default="digits", show_default=True),
        click.option("--data-root", type=UserPath(path_type=Path), default=Path("data"), show_default=True,
                     help="Where data files live: MNIST / Fashion-MNIST IDX files (gzipped or not, flat or in "
                          "torchvision's <Name>/raw), CIFAR-10 in torchvision's layout."),
        click.option("--download/--no-download", default=False, help="Fetch a torchvision data set (needs a network)."),
        click.option("--skip-bad-images", is_flag=True,
                     help="folder:PATH: skip unreadable image files (counted in a note) instead of stopping at the "
                          "first."),
        click.option("--image-mode", type=click.Choice(["L", "RGB"]), default=None,
                     help="folder:PATH: convert every image to greyscale (L) or colour (RGB); without it a folder "
                          "mixing the two is refused."),
        click.option("--condition", type=click.Choice(["label"]), default=None,
                     help="Condition every part on the class label (a conditional VAE); the NLL is -log p(x | y)."),
        click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True,
                     help="Epochs of the autoencoder."),
        click.option("--prior-epochs", type=click.IntRange(min=1), default=None,
                     help="Epochs of a prior fitted by gradient after the autoencoder (PixelCNN) [--epochs]."),
        click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
                     help="Images per optimiser step. Under torchrun this is the global batch: each rank takes an "
                          "equal share of it."),
        click.option("--lr", type=float, default=1e-3, show_default=True),
        click.option("--seed", "seeds", type=int, multiple=True, default=(0,), show_default=True,
                     help="Random seed. Repeatable: each combo runs once per seed."),
        click.option("--deterministic", is_flag=True, help="Use deterministic algorithms only."),
        click.option("--compile", "compile_", is_flag=True, help="torch.compile every part (for long GPU runs)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--threads", default="auto", show_default=True, callback=thread_count, metavar="N|auto",
                     help="Intra-op CPU threads. auto: this process's share of the cores (cores / torchrun's local "
                          "ranks), fewer while other processes keep cores busy (Linux)."),
        click.option("--set", "assignments", multiple=True, metavar="GROUP.NAME=VALUE",
                     help=f"A part, objective or data-set option, e.g. encoder.latent_dim=8, objective.beta=0.5 "
                          f"(groups: {', '.join(SLOTS)}, objective, dataset). Repeatable."),
        click.option("--checkpoint-every", type=float, default=30.0, show_default=True, metavar="SECONDS",
                     help="Write the checkpoint after an epoch once this many seconds have passed since the last "
                          "(and after each stage's last epoch); 0: after every epoch."),
        click.option("--out", type=UserPath(path_type=Path), default=Path("vaereg-runs"), show_default=True,
                     help="Where checkpoints (and sample grids) go."),
        click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out if there is one."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
        click.option("--log", "log", multiple=True, metavar="NAME",
                     help="A tracker besides metrics.jsonl (always written next to the checkpoint): tensorboard, "
                          "or one a plugin registers. Repeatable."),
    ]
    for option in reversed(options):
        command = option(command)

    @wraps(command)
    def wrapper(**kw):
        names = ("epochs", "prior_epochs", "batch_size", "lr", "device", "deterministic", "threads",
                 "checkpoint_every")
        values = {name: kw.pop(name) for name in names} | {"compile": kw.pop("compile_")}
        kw["train_configs"] = [from_dict(TrainConfig, {**values, "seed": seed}, what="training option")
                               for seed in dict.fromkeys(kw.pop("seeds"))]
        threads.configure(kw["train_configs"][0].threads)  # before any parallel region runs
        kw["grouped"] = experiment.merged_sets(click.get_current_context(), list(kw.pop("assignments")))
        distributed.start()  # under torchrun: join the job
        with distributed.rank_zero_first():  # a download happens once
            kw["data"] = load_data(kw.pop("dataset"), kw.pop("data_root"), download=kw.pop("download"),
                                   condition=kw.pop("condition"), skip_bad_images=kw.pop("skip_bad_images"),
                                   image_mode=kw.pop("image_mode"), options=kw["grouped"].get("dataset"))
        return command(**kw)

    return wrapper


def read_experiment(ctx: click.Context, _param, path: Path | None) -> None:
    if path is not None:
        try:
            experiment.load(ctx, path, [main.commands[name] for name in RUN_COMMANDS if name != ctx.command.name])
        except UsageError as exc:
            raise click.UsageError(str(exc), ctx) from None


def print_experiment(combos, data, grouped, configs: list[RunConfig], out: Path) -> None:
    """``--print-config``: the resolved experiment, then each run and its folder."""
    ctx = click.get_current_context()
    click.echo(experiment.resolved(ctx, grouped), nl=False)
    options = part_options(grouped)
    click.echo(f"\n# {len(configs) * len(combos)} run(s):")
    for text in combos:
        combo = resolve(text, data.spec, {**options, "objective": configs[0].objective})
        for config in configs:
            click.echo(f"#   {text} seed {config.train.seed}: {run_dir(out, data, combo, config)}")


def part_options(grouped: dict) -> dict:
    """The part options of ``--set``'s groups (the objective's and the data set's are taken elsewhere)."""
    groups = (*GROUPS, "dataset")
    unknown = set(grouped) - set(groups)
    if unknown:
        raise UsageError(f"--set group {sorted(unknown)[0]!r} is unknown; groups: {', '.join(groups)}")
    return {slot: values for slot, values in grouped.items() if slot in SLOTS}


def checked(combos, data, grouped, config: RunConfig, log: tuple[str, ...], **folders: Path) -> dict:
    """Every combo resolved and probed (``vaereg.probe``), and its options, objective, loggers
    and output ``folders`` (option name -> path) checked before any work starts; returns the
    part options."""
    for name in log:
        logger_class(name)
    options = part_options(grouped)
    device = pick_device(config.train.device)
    for text in combos:
        probe_combo(resolve(text, data.spec, {**options, "objective": config.objective}), data, device)
    for option, path in folders.items():
        check_folder(path, f"--{option}")
    for option, path in folders.items():  # last, once everything is checked
        make_folder(path, f"--{option}")
    return options


@click.group(cls=Group)
@click.version_option(package_name="vaereg")
def main() -> None:
    """vaereg: assemble, train and evaluate variational autoencoders from registered parts."""


def metric_list(_ctx, _param, value: tuple[str, ...]) -> tuple[str, ...]:
    """``--metrics a,b --metrics c`` (or a file's ``metrics = ["a", "b"]``) -> ``("a", "b", "c")``."""
    return tuple(dict.fromkeys(name.strip() for given in value for name in given.split(",") if name.strip()))


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
                         iw_chunk=iw_chunk, fid_samples=fid_samples, eval_images=eval_images, metrics=metrics)
               for train in train_configs]
    for text in combos:  # every metric known and able to score each combo, before anything runs
        combo = resolve(text, data.spec, {**part_options(grouped), "objective": configs[0].objective})
        build_metrics(metrics, data, combo)
    options = checked(combos, data, grouped, configs[0], log, out=out, results=results)
    if print_config:
        return print_experiment(combos, data, grouped, configs, out)
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
    rows = []
    for text in combos:
        combo = resolve(text, data.spec, {**options, "objective": configs[0].objective})
        for config in configs:
            done = writer and recorded(results, run_key(data, combo, config), json.dumps(config.describe(combo)))
            if distributed.agree(done):  # rank 0 reads the store; every rank skips alike
                if writer:
                    click.echo(f"note: {text} seed {config.train.seed} is already recorded in {results}/ with "
                               f"these settings; skipped (change a setting, or remove its row, to run it again)",
                               err=True)
                continue
            row = evaluate_combo(text, data, options, config, out, fid=protocol, resume=resume, progress=not quiet,
                                 log=log)
            if row is not None:
                append_or_keep(results, row)
                rows.append(row.as_dict())
    if writer:
        click.echo(format_table(rows))
        click.echo(f"{len(rows)} row(s) appended to {results}/")


@main.command("train")
@run_options
def train_command(combos, data, train_configs, grouped, out, resume, quiet, log, print_config):
    """Train every stage of each combo (once per seed) and write its checkpoint and metrics log
    (no evaluation)."""
    configs = [RunConfig(train=train, objective=grouped.get("objective", {})) for train in train_configs]
    options = checked(combos, data, grouped, configs[0], log, out=out)
    if print_config:
        return print_experiment(combos, data, grouped, configs, out)
    for text in combos:
        for config in configs:
            model = create_model(text, data, options, config)
            _, path = train_model(model, data, config, out, resume=resume, progress=not quiet, log=log)
            if distributed.current().writer:
                click.echo(f"{text} seed {config.train.seed}: checkpoint {path}")


@main.command("sample")
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=UserPath(path_type=Path))
@click.option("-n", "count", type=click.IntRange(1, 10000), default=64, show_default=True)
@click.option("-o", "output", type=UserPath(path_type=Path), default=Path("samples.png"), show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--label", type=int, default=None,
              help="Class of every sample, for a model trained with --condition label [every class in turn].")
def sample_command(checkpoint_path, count, output, seed, label):
    """Draw N samples from a checkpoint's model and save them as a PNG grid."""
    from vaereg import Context

    if output.suffix.lower() != ".png":
        raise UsageError(f"-o {output}: the grid is written as PNG; give a path ending in .png")
    model = checkpoint.rebuild(checkpoint.load(checkpoint_path), checkpoint_path).eval()
    classes = model.combo.data.classes
    if label is not None and not classes:
        raise UsageError(f"--label {label}: {checkpoint_path} holds an unconditional model; drop --label")
    if label is not None and not 0 <= label < classes:
        raise UsageError(f"--label {label} is not a class of this model; give 0..{classes - 1}")
    labels = None
    if classes:
        labels = torch.full((count,), label) if label is not None else torch.arange(count) % classes
    torch.manual_seed(seed)
    context = Context(label=labels)
    with torch.no_grad():
        samples = torch.cat([model.sample(min(256, count - i), context.select(slice(i, i + 256)))
                             for i in range(0, count, 256)])
    save_grid(samples, output)
    click.echo(f"{count} samples from {model.combo.text} written to {output}")


def skipped_file(path: Path, why: str) -> None:
    click.echo(f"note: skipped {path}, not a readable results file ({why})", err=True)


def declares(entry) -> str:
    """What a listing shows beside an entry's name: its posterior, the latents it fits, how a
    data set is named, or how many result columns a metric fills."""
    cls = entry.cls
    if entry.kind == "encoder":
        fills = f", fills {'/'.join(cls.fills)}" if cls.fills else ""
        return f"posterior {cls.posterior.__name__}{fills}"
    if entry.kind in SLOTS or entry.kind == "objective":
        return f"serves {'/'.join(sorted(cls.latent_kinds))}"
    if entry.kind == "dataset":
        return f"--dataset {entry.name}" + (f":{cls.argument}" if cls.argument else "")
    return f"{len(cls.columns)} result column(s)"


def describe_options(config: type) -> list[dict]:
    """Each option of a ``Config`` dataclass: name, type, range, choices, default."""
    listed, defaults = [], to_dict(config())
    for name, kind in field_types(config).items():
        choices = typing.get_args(kind.base) if typing.get_origin(kind.base) is typing.Literal else None
        listed.append({"name": name, "type": "choice" if choices else kind.base.__name__,
                       "choices": list(choices) if choices else None,
                       "range": kind.range.describe() if kind.range is not None else None,
                       "optional": kind.optional, "default": defaults[name], "describe": kind.describe()})
    return listed


def first_sentence(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
    end = re.search(r"\.\s+(?=[A-Z])", paragraph)
    return paragraph if end is None else paragraph[:end.start() + 1]


def describe_entry(entry) -> dict:
    described = {"kind": entry.kind, "name": entry.name, "description": first_sentence(entry.cls.__doc__),
                 "declares": declares(entry), "options": describe_options(entry.cls.Config)}
    if entry.kind == "metric":
        described["columns"] = [{"name": c.name, "type": c.type.__name__, "unit": c.unit,
                                 "higher_is_better": c.higher_is_better, "description": c.description}
                                for c in entry.cls.columns]
    return described


def describe_column(column: dict) -> str:
    direction = {True: "higher is better", False: "lower is better", None: ""}[column["higher_is_better"]]
    return f"{column['name']} ({', '.join(filter(None, (column['type'], column['unit'], direction)))})"


def describe_plugins() -> dict:
    """Everything ``vaereg plugins`` shows, JSON-ready: the plugin API, each plugin (its
    distribution, version, API and state) with its entries of every kind and their options, its
    presets, loggers and KL pairs, and every closed-form KL pair."""
    registry = get_registry()
    tracker_table = loggers()
    pairs = [{"posterior": q.__name__, "prior": p.__name__, "plugin": plugin}
             for (q, p), (_, plugin) in registry.kl.rules.items()]
    listing = []
    for info in registry.plugins:
        state = "disabled" if info.disabled else "skipped" if info.error else "loaded"
        entries = [describe_entry(e) for kind in registry.entries.values() for e in kind.values()
                   if e.plugin == info.name]
        presets = [{"name": p.name, "description": p.description, "slots": p.slots,
                    "objective": p.slots.get("objective", DEFAULT_OBJECTIVE), "options": p.options}
                   for p in registry.presets.values() if p.plugin == info.name]
        trackers = sorted(name for name, (_, plugin) in tracker_table.items() if plugin == info.name)
        listing.append({"name": info.name, "distribution": info.distribution, "version": info.version,
                        "api": info.api, "state": state, "error": info.error, "entries": entries,
                        "presets": presets, "loggers": trackers,
                        "kl_pairs": [p for p in pairs if p["plugin"] == info.name]})
    return {"plugin_api": PLUGIN_API, "supported_apis": list(SUPPORTED_APIS), "plugins": listing, "kl_pairs": pairs}


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json):
    """List the plugin API and every plugin: its distribution, version and state (a skipped
    plugin with its reason), and what it registers: parts, objectives, data sets, metrics (each
    with its options), presets, loggers and closed-form KL pairs."""
    described = describe_plugins()
    if as_json:
        click.echo(json.dumps(described, indent=2, default=str))
        return
    apis = " and ".join(map(str, described["supported_apis"]))
    click.echo(f"vaereg plugin API {described['plugin_api']}\nloads plugins written for API {apis}")
    for plugin in described["plugins"]:
        state = {"loaded": "", "disabled": " (disabled)", "skipped": f" (skipped: {plugin['error']})"}[plugin["state"]]
        click.echo(f"\n{plugin['name']} {plugin['version']}{state}")
        if plugin["state"] != "loaded":
            continue
        deprecated = " (deprecated)" if plugin["api"] != described["plugin_api"] else ""
        click.echo(f"  from {plugin['distribution'] or 'an unknown distribution'} {plugin['version']}, "
                   f"plugin API {plugin['api']}{deprecated}")
        for entry in plugin["entries"]:
            click.echo(f"  {entry['kind']:<10} {entry['name']:<14} {entry['declares']:<42} {entry['description']}")
            if entry["options"]:
                options = [f"{o['name']}={json.dumps(o['default'])} ({o['describe']})" for o in entry["options"]]
                click.echo(f"{'':13}options: {'; '.join(options)}")
            if entry["kind"] == "metric":
                click.echo(f"{'':13}columns: {'; '.join(map(describe_column, entry['columns']))}")
        for preset in plugin["presets"]:
            slots = " ".join(f"{k}={v}" for k, v in preset["slots"].items() if k != "objective")
            options = " ".join(f"{g}.{k}={json.dumps(v)}" for g, values in preset["options"].items()
                               for k, v in values.items())
            click.echo(f"  preset     {preset['name']:<14} {slots} objective={preset['objective']}"
                       + (f" {options}" if options else ""))
        for name in plugin["loggers"]:
            click.echo(f"  logger     {name:<14} --log {name}")
        for pair in plugin["kl_pairs"]:
            click.echo(f"  kl         {pair['posterior']} || {pair['prior']}")
    click.echo("\nclosed-form KL pairs (posterior || prior; any other pair uses the Monte-Carlo KL):")
    plugins = {plugin["name"] for plugin in described["plugins"]}
    for pair in described["kl_pairs"]:
        owner = pair["plugin"] if pair["plugin"] in plugins else f"{pair['plugin']} (core)"
        click.echo(f"  {pair['posterior'] + ' || ' + pair['prior']:<42} {owner}")


@main.command("check-plugin")
@click.argument("name")
@click.option("--data-root", type=UserPath(path_type=Path), default=Path("data"), show_default=True,
              help="Where a data-set plugin looks for its files.")
@click.option("--json", "as_json", is_flag=True, help="The rows as JSON.")
def check_plugin_command(name, data_root, as_json):
    """Run the conformance kit on the plugin NAME (as `vaereg plugins` lists it): its
    registration checks, then for every entry and each compatible combo the probe batch, one
    training step and a K=2 NLL. Prints a pass/fail table; exits 1 when a check fails."""
    from vaereg.conformance import as_json as rows_json
    from vaereg.conformance import check_plugin, table

    rows = check_plugin(name, root=data_root)
    click.echo(rows_json(rows) if as_json else table(rows))
    counts = {result: sum(row.result == result for row in rows) for result in ("pass", "skip", "fail")}
    if not as_json:
        click.echo(f"{name}: {counts['pass']} passed, {counts['skip']} skipped, {counts['fail']} failed")
    if counts["fail"]:
        sys.exit(1)


@main.command("results")
@click.option("--results", type=UserPath(path_type=Path), default=Path("vaereg-results"), show_default=True)
@click.option("--combo", default=None, help="Only rows of this combo (as given to eval).")
@click.option("--sort", "sort_by", default=None, metavar="COLUMN",
              help="Best first by a metric column: descending where higher is better (a score), ascending "
                   "otherwise; rows without a value last [oldest first].")
def results_command(results, combo, sort_by):
    """Show the results store as a table."""
    key = sort_key(sort_by) if sort_by else None  # an unknown column is refused before anything is read
    rows = read_results(results, on_skip=skipped_file).to_pylist()
    if combo is not None:
        rows = [r for r in rows if r["combo"] == combo]
    if not rows:
        click.echo(f"no rows in {results}/" + (f" for combo {combo!r}" if combo else ""), err=True)
        return
    click.echo(format_table(sorted(rows, key=key) if key else rows))


@main.command("report")
@click.option("--results", type=UserPath(path_type=Path), default=Path("vaereg-results"), show_default=True)
@click.option("--out", type=UserPath(path_type=Path), default=Path("vaereg-report"), show_default=True,
              help="Folder for index.html, report.md and figures/.")
@click.option("--title", default="vaereg report", show_default=True)
def report_command(results, out, title):
    """Write an HTML page (one file, every image embedded) and its Markdown twin from a results
    store and its run folders: a sortable leaderboard per data set, NLL against FID, training
    curves and sample grids."""
    from vaereg_harness.report import write_report

    check_folder(out, "--out")
    make_folder(out, "--out")
    page, twin = write_report(results, out, title, on_skip=skipped_file)
    click.echo(f"report written to {page} and {twin}")


if __name__ == "__main__":
    sys.exit(main())
