"""Options the run commands share, and the types behind them: paths checked for the file
system, ``--dataset`` listing the registered data sets, ``--threads N|auto``, ``--metrics a,b``,
and ``--config`` experiment files read into every option's default."""

from __future__ import annotations

import os
from functools import wraps
from pathlib import Path

import click

from vaereg import UsageError
from vaereg.config import from_dict
from vaereg.parts import SLOTS
from vaereg_harness.api import load_data
from vaereg_harness.cli import experiment
from vaereg_harness.data import dataset_names
from vaereg_harness.launch import distributed, threads
from vaereg_harness.run.config import TrainConfig
from vaereg_harness.store.files import check_path_name

RUN_COMMANDS = ("eval", "train")


class UserPath(click.Path):
    """A path option; a name too long for the file system or holding a NUL is a usage error here
    (the group refuses arguments that are not UTF-8)."""

    def convert(self, value, param, ctx):
        text = os.fspath(value)
        if "\x00" in text:
            self.fail(f"{text!r} holds a NUL character, which no path may; give a path without it", param, ctx)
        try:
            check_path_name(text, "")
        except UsageError as exc:
            self.fail(str(exc).strip(), param, ctx)
        return super().convert(value, param, ctx)


class DatasetOption(click.Option):
    """``--dataset``, whose help lists the registered data sets (read when the help is shown)."""

    def get_help_record(self, ctx):
        self.help = (f"One of {dataset_names()}; a plugin may register more. --set dataset.NAME=VALUE sets its "
                     f"options.")
        return super().get_help_record(ctx)


class ThreadCount(click.ParamType):
    """``--threads N|auto``: a whole number of threads, or None for auto; a file gives either."""

    name = "N|auto"
    file_types = (int, str)
    file_expects = "a whole number of threads or 'auto'"

    def convert(self, value, param, ctx) -> int | None:
        if value is None or value == "auto":
            return None
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a whole number of threads nor 'auto'", param, ctx)


def metric_list(_ctx, _param, value: tuple[str, ...]) -> tuple[str, ...]:
    """``--metrics a,b --metrics c`` (or a file's ``metrics = ["a", "b"]``) -> ``("a", "b", "c")``."""
    return tuple(dict.fromkeys(name.strip() for given in value for name in given.split(",") if name.strip()))


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
        click.option("--validation-images", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Images held out of the training split (a fixed seed-0 choice); their negative ELBO is "
                          "logged each epoch as validation_elbo. Never the test split."),
        click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
                     help="Images per optimiser step. Under torchrun this is the global batch: each rank takes an "
                          "equal share of it."),
        click.option("--lr", type=float, default=1e-3, show_default=True),
        click.option("--seed", "seeds", type=int, multiple=True, default=(0,), show_default=True,
                     help="Random seed. Repeatable: each combo runs once per seed."),
        click.option("--max-runs", type=click.IntRange(min=1), default=1000, show_default=True,
                     help="The most runs (combos x seeds) one command starts; a larger sweep is refused before "
                          "anything runs. Given on the command line only, not in --config files."),
        click.option("--deterministic", is_flag=True, help="Use deterministic algorithms only."),
        click.option("--compile", "compile_", is_flag=True, help="torch.compile every part (for long GPU runs)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--threads", type=ThreadCount(), default="auto", show_default=True, metavar="N|auto",
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
                 "checkpoint_every", "validation_images")
        values = {name: kw.pop(name) for name in names} | {"compile": kw.pop("compile_")}
        seeds = list(dict.fromkeys(kw.pop("seeds")))
        check_sweep(len(kw["combos"]), len(seeds), kw.pop("max_runs"))
        kw["train_configs"] = [from_dict(TrainConfig, {**values, "seed": seed}, what="training option")
                               for seed in seeds]
        threads.configure(kw["train_configs"][0].threads)  # before any parallel region runs
        kw["grouped"] = experiment.merged_sets(click.get_current_context(), list(kw.pop("assignments")))
        distributed.start()  # under torchrun: join the job
        with distributed.rank_zero_first():  # a download happens once
            kw["data"] = load_data(kw.pop("dataset"), kw.pop("data_root"), download=kw.pop("download"),
                                   condition=kw.pop("condition"), skip_bad_images=kw.pop("skip_bad_images"),
                                   image_mode=kw.pop("image_mode"), options=kw["grouped"].get("dataset"))
        return command(**kw)

    return wrapper


def check_sweep(combos: int, seeds: int, cap: int) -> None:
    """A sweep of more than ``cap`` runs is refused before anything is resolved or read."""
    if combos * seeds > cap:
        raise UsageError(f"--max-runs {cap}: this sweep is {combos} combo(s) x {seeds} seed(s) = {combos * seeds} "
                         f"runs; give --max-runs {combos * seeds} on the command line to start them all")


def read_experiment(ctx: click.Context, _param, path: Path | None) -> None:
    if path is not None:
        try:
            siblings = [ctx.parent.command.commands[name] for name in RUN_COMMANDS if name != ctx.command.name]
            experiment.load(ctx, path, siblings)
        except UsageError as exc:
            raise click.UsageError(str(exc), ctx) from None
