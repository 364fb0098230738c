"""The conformance kit for plugin authors, in the spirit of scikit-learn's ``check_estimator``.

``check_plugin(name)`` runs, for one loaded (or skipped) plugin, the registration checks, then
for every entry it registers and each compatible combo built from the registered presets: the
probe batch (``vaereg.probe``), one training step through the objective's real steps and Adam,
the prior's own stage when it trains after the autoencoder, and a K=2 importance-sampled NLL on
a few digits images (or binary digits, or random colour images, for parts that need them).
``vaereg check-plugin NAME`` prints the table; a plugin's own test suite can call
``assert_conforms(name)``::

    from vaereg.conformance import assert_conforms

    def test_my_plugin_conforms():
        assert_conforms("vaereg-mylik")
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vaereg import checks, hookspecs
from vaereg.combo import DEFAULT_OBJECTIVE, Combo, resolve
from vaereg.data import Dataset, dataset_problem
from vaereg.errors import UsageError, VaeregError
from vaereg.metrics import COLUMN_TYPES, Column, EvaluationPass, Metric, Samples, Scoring, checked_values
from vaereg.model import VAE, Batch
from vaereg.objectives import build_objective, importance_nll, negative_elbo
from vaereg.parts import SLOTS
from vaereg.probe import probe
from vaereg.registry import DISABLE_ENV, Entry, PluginInfo, Preset, Registry, Skip, Staged, get_registry
from vaereg.specs import DataSpec

TRAIN_IMAGES, TEST_IMAGES, BATCH = 32, 8, 16
LR = 1e-3
#: The preset a data-set plugin is checked with (else the first preset its data fits).
DATASET_PRESET = "gaussian-mlp"
CHEAP_SAMPLES = 64  # a metric that draws more samples is not computed by the kit

Result = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class CheckResult:
    """One row of the table: which ``check`` ran on which ``entry`` (``kind 'name'``, empty for
    the plugin itself) in which ``combo`` (empty when none), and its ``result`` and ``reason``."""

    check: str
    entry: str
    combo: str
    result: Result
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.result == "fail"


class CheckFailed(VaeregError):
    """A check found a broken contract; its message is the row's reason."""


def check_plugin(name: str, registry: Registry | None = None, root: Path = Path("data")) -> list[CheckResult]:
    """Every conformance check of the plugin ``name`` (an entry-point name, as ``vaereg
    plugins`` lists it). ``root`` is where a data-set plugin looks for its files."""
    registry = registry or get_registry()
    info = next((p for p in registry.plugins if p.name == name), None)
    if info is None:
        known = ", ".join(p.name for p in registry.plugins) or "none"
        raise UsageError(f"unknown plugin {name!r}; installed plugins: {known}")
    rows = registration(info, registry)
    if any(row.failed for row in rows):
        return rows
    return rows + Checker(info, registry, root).run()


def assert_conforms(name: str, registry: Registry | None = None, root: Path = Path("data")) -> list[CheckResult]:
    """``check_plugin(name)``; raises ``AssertionError`` listing the failing rows."""
    rows = check_plugin(name, registry, root)
    failed = [row for row in rows if row.failed]
    if failed:
        raise AssertionError(f"plugin {name!r} fails {len(failed)} conformance check(s):\n{table(failed)}")
    return rows


def table(rows: list[CheckResult]) -> str:
    """The rows as an aligned text table: check, entry, combo, result (and reason)."""
    cells = [("check", "entry", "combo", "result")]
    cells += [(r.check, r.entry or "-", r.combo or "-", r.result + (f": {r.reason}" if r.reason else ""))
              for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    return "\n".join("  ".join([*(c[i].ljust(widths[i]) for i in range(3)), c[3]]).rstrip() for c in cells)


def as_json(rows: list[CheckResult]) -> str:
    return json.dumps([dataclasses.asdict(r) for r in rows], indent=2)


# --- registration -------------------------------------------------------------------------

def registration(info: PluginInfo, registry: Registry) -> list[CheckResult]:
    """The checks the registry ran when it loaded ``info``: import, plugin API, and every
    registration (contract, options, names); a skipped plugin fails the check that skipped it."""
    if info.disabled:
        return [CheckResult("enabled", "", "", "fail", f"disabled by {DISABLE_ENV}; unset it to check the plugin")]
    if info.module is None:
        return [CheckResult("import", "", "", "fail", info.error or "not loaded")]
    rows = [CheckResult("import", "", "", "pass")]
    problem = checks.api_problem(info.module)
    if problem:
        return [*rows, CheckResult("plugin API", "", "", "fail", problem)]
    api = info.module.VAEREG_PLUGIN_API
    rows.append(CheckResult("plugin API", "", "", "pass", "" if api == hookspecs.PLUGIN_API else
                            f"API {api} loads, but is deprecated: declare VAEREG_PLUGIN_API = "
                            f"{hookspecs.PLUGIN_API}"))
    if info.error is not None:
        return [*rows, CheckResult(failed_check(info, registry), "", "", "fail", info.error)]
    counts = {"entries": sum(e.plugin == info.name for kind in registry.entries.values() for e in kind.values()),
              "presets": sum(p.plugin == info.name for p in registry.presets.values()),
              "KL pairs": sum(plugin == info.name for _, plugin in registry.kl.rules.values())}
    return [*rows, CheckResult("registration", "", "", "pass", ", ".join(f"{n} {what}" for what, n in counts.items()))]


def failed_check(info: PluginInfo, registry: Registry) -> str:
    """Which registration check skipped ``info``: its hooks are replayed, unchecked into the
    registry, and the registration that is refused names the check."""
    staged = Staged(registry, info)
    current: list[Any] = []

    def traced(label: str, register: Callable) -> Callable:
        def call(*args: Any, **kw: Any) -> None:
            current[:] = [label, *args]
            register(*args, **kw)
        return call

    try:
        for hook, register in staged.hooks().items():
            impl = getattr(info.module, hook, None)
            if impl is not None:
                impl(register=traced(hook, register))
    except Skip as exc:
        return refused_check(info, current, str(exc))
    except Exception:
        return "hooks"
    return "name"  # each registration passed alone: its name is taken


def refused_check(info: PluginInfo, current: list[Any], reason: str) -> str:
    """The check behind ``reason``, refusing the registration ``current`` (hook, name, class)."""
    hook, *args = current
    if hook == "register_presets":
        return "presets"
    if hook == "register_kl" or len(args) < 2:
        return "hooks"
    name, cls = args[0], args[1]
    if not isinstance(name, str) or not name or any(c in name for c in "+=:"):
        return "name"
    kind = checks.kind_of(cls)
    if kind is None:
        return "contract"
    renamed = info.api == 2 and any(old in k.__dict__ for k in cls.__mro__ for old in checks.RENAMED_IN_3)
    if renamed:
        return "plugin API"
    if checks.config_problem(f"{kind} {name!r}", cls) == reason:
        return "options"
    return "contract"


# --- entries and combos -------------------------------------------------------------------

@functools.cache
def digits() -> Dataset:
    """A few of scikit-learn's 8x8 digits (17 intensities), with labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    cut = TRAIN_IMAGES + TEST_IMAGES
    return Dataset(DataSpec("digits", 1, 8, 8, 17), images[:TRAIN_IMAGES], images[TRAIN_IMAGES:cut],
                   labels[:TRAIN_IMAGES], labels[TRAIN_IMAGES:cut])


@functools.cache
def binary_digits() -> Dataset:
    """The same digits thresholded at half intensity, for parts that need binary data."""
    data = digits()
    return Dataset(DataSpec("digits-binary", 1, 8, 8, 2), (data.train >= 8).to(torch.uint8),
                   (data.test >= 8).to(torch.uint8), data.train_labels, data.test_labels)


@functools.cache
def colour() -> Dataset:
    """Random 8x8 colour images (256 intensities, a fixed seed), for parts that need RGB data."""
    images = torch.randint(0, 256, (TRAIN_IMAGES + TEST_IMAGES, 3, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    return Dataset(DataSpec("random-rgb", 3, 8, 8, 256), images[:TRAIN_IMAGES], images[TRAIN_IMAGES:])


def kit_data() -> tuple[Dataset, ...]:
    """The data sets a combo is tried on, in order: the first it fits is the one it is checked on."""
    return digits(), binary_digits(), colour()


def small(data: Dataset) -> Dataset:
    """``data`` cut to a few images of each split (labels and factors alike)."""
    def cut(t, n):
        return None if t is None else t[:n]

    factors = data.factors
    if factors is not None:
        factors = dataclasses.replace(factors, train=factors.train[:TRAIN_IMAGES], test=factors.test[:TEST_IMAGES])
    return dataclasses.replace(data, train=data.train[:TRAIN_IMAGES], test=data.test[:TEST_IMAGES],
                               train_labels=cut(data.train_labels, TRAIN_IMAGES),
                               test_labels=cut(data.test_labels, TEST_IMAGES), factors=factors)


def describe(entry: Entry) -> str:
    return f"{entry.kind} {entry.name!r}"


class Checker:
    """The entry and combo checks of one loaded plugin."""

    def __init__(self, info: PluginInfo, registry: Registry, root: Path):
        self.info, self.registry, self.root = info, registry, root
        self.rows: list[CheckResult] = []
        self.done: dict[tuple, str] = {}  # a combo already checked -> the text it was checked as

    def run(self) -> list[CheckResult]:
        registry, mine = self.registry, self.info.name
        for kind in checks.KINDS:
            for entry in registry.entries[kind].values():
                if entry.plugin == mine:
                    self.entry(entry)
        for preset in registry.presets.values():
            if preset.plugin == mine:
                self.combos(f"preset {preset.name!r}", [preset.name])
        for (posterior, prior), (_, plugin) in registry.kl.rules.items():
            if plugin == mine:
                self.kl_pair(posterior, prior)
        return self.rows

    def row(self, check: str, entry: str, combo: str, result: Result, reason: str = "") -> None:
        self.rows.append(CheckResult(check, entry, combo, result, reason))

    def entry(self, entry: Entry) -> None:
        if entry.kind in (*SLOTS, "objective"):
            self.combos(describe(entry), self.texts(entry))
        elif entry.kind == "dataset":
            self.dataset(entry)
        elif entry.kind == "metric":
            self.metric(entry)

    def texts(self, entry: Entry) -> list[str]:
        """``entry`` put into each registered preset: the presets that hold it already first."""
        def held(preset: Preset) -> bool:
            default = DEFAULT_OBJECTIVE if entry.kind == "objective" else None
            return preset.slots.get(entry.kind, default) == entry.name

        presets = sorted(self.registry.presets.values(), key=lambda p: not held(p))
        return [p.name if held(p) else f"{p.name}+{entry.kind}={entry.name}" for p in presets]

    def combos(self, what: str, texts: list[str], datasets: tuple[Dataset, ...] | None = None) -> None:
        """Resolve each of ``texts`` on the first data set it fits, and check every combo
        that resolves; none resolving is a failure naming the first refusal."""
        refusals, checked = [], 0
        for text in texts:
            combo, data, refused = self.resolve(text, datasets or kit_data())
            if combo is None:
                refusals.append(f"{text}: {refused}")
                continue
            checked += 1
            key = (data.spec.name, combo.canonical, json.dumps(combo.options(), sort_keys=True, default=str),
                   json.dumps(combo.objective_options(), sort_keys=True, default=str))
            if key in self.done:
                self.row("combo", what, text, "pass", f"the same model as {self.done[key]}, checked above")
                continue
            self.done[key] = text
            self.combo(what, text, combo, data)
        if not checked:
            reason = refusals[0] if refusals else "no registered preset to build a combo from"
            self.row("compatibility", what, "", "fail", f"no combo of the registered presets takes it ({reason})")

    def resolve(self, text: str, datasets: tuple[Dataset, ...]) -> tuple[Combo | None, Dataset | None, str]:
        refused = ""
        for data in datasets:
            try:
                return resolve(text, data.spec, registry=self.registry), data, ""
            except UsageError as exc:
                refused = refused or str(exc)
            except Exception as exc:  # a part's compatibility check itself broke
                refused = refused or f"{type(exc).__name__}: {exc}"
        return None, None, refused

    def combo(self, what: str, text: str, combo: Combo, data: Dataset) -> None:
        """Probe, one training step, the prior's own stage, and a K=2 NLL; a failure stops the
        checks of this combo."""
        checks_of = [("probe", probe_check), ("train step", train_step)]
        if combo.schedule != "joint":
            checks_of.append(("prior stage", prior_stage))
        checks_of.append(("nll K=2", nll_check))
        with seeded():
            try:
                model = VAE(combo)
            except Exception as exc:
                self.row("build", what, text, "fail", one_line(exc))
                return
            for check, run in checks_of:
                try:
                    reason = run(model, data)
                except Exception as exc:  # a broken contract, or a part or objective that raises
                    self.row(check, what, text, "fail", one_line(exc))
                    return
                self.row(check, what, text, "pass", reason)

    def kl_pair(self, posterior: type, prior: type) -> None:
        """A KL pair is checked in a combo that trains with it (the probe checks its shape)."""
        what = f"KL pair ({posterior.__name__} || {prior.__name__})"
        priors = [None, *sorted(self.registry.entries["prior"])]
        for preset in self.registry.presets:
            for name in priors:
                text = preset if name is None else f"{preset}+prior={name}"
                combo, _, _ = self.resolve(text, kit_data())
                if combo is not None and combo.parts["encoder"].cls.posterior is posterior \
                        and combo.training_prior is prior:
                    self.combos(what, [text])
                    return
        self.row("compatibility", what, "", "fail", "no combo of the registered presets and priors trains with it")

    def dataset(self, entry: Entry) -> None:
        what = describe(entry)
        cls = entry.cls
        if cls.argument is not None:
            self.row("load", what, "", "skip", f"loads from --dataset {entry.name}:{cls.argument} only; not loaded")
            return
        try:
            loaded = cls(cls.Config()).load(self.root, download=False, argument=None)
        except UsageError as exc:
            self.row("load", what, "", "skip", f"not loaded from {self.root}: {exc}")
            return
        except Exception as exc:
            self.row("load", what, "", "fail", one_line(exc))
            return
        problem = dataset_problem(loaded)
        if problem:
            self.row("load", what, "", "fail", problem)
            return
        self.row("load", what, "", "pass", loaded.spec.describe())
        presets = [DATASET_PRESET] if DATASET_PRESET in self.registry.presets else sorted(self.registry.presets)
        self.combos(what, presets, (small(loaded),))

    def metric(self, entry: Entry) -> None:
        """Build the metric, check its columns, and compute it on a model of the dataset preset
        after one training step, unless it says it cannot score it or wants many samples."""
        what = describe(entry)
        try:
            metric = entry.cls(entry.cls.Config())
        except Exception as exc:
            self.row("build", what, "", "fail", one_line(exc))
            return
        problem = columns_problem(metric.columns)
        self.row("columns", what, "", "fail" if problem else "pass",
                 problem or ", ".join(c.name for c in metric.columns))
        combo, data, _ = self.resolve(DATASET_PRESET, (digits(),))
        if problem or combo is None:
            return
        with seeded():
            try:
                computed = compute(entry.name, metric, combo, data)
            except Exception as exc:
                self.row("compute", what, DATASET_PRESET, "fail", one_line(exc))
                return
        self.row("compute", what, DATASET_PRESET, *computed)


def columns_problem(columns: Any) -> str | None:
    """Why ``columns`` is not a non-empty sequence of ``Column`` with distinct names and types."""
    if not columns:
        return "declares no columns"
    names = []
    for column in columns:
        if not isinstance(column, Column):
            return f"column {column!r} is not a vaereg.Column"
        if not isinstance(column.name, str) or not column.name:
            return f"column name {column.name!r} is not a non-empty string"
        if column.type not in COLUMN_TYPES:
            return f"column {column.name!r} has type {column.type!r}; a column is int, float or str"
        if column.higher_is_better not in (True, False, None):
            return f"column {column.name!r}: higher_is_better is {column.higher_is_better!r}; true, false or None"
        names.append(column.name)
    if len(set(names)) != len(names):
        return f"column names repeat: {', '.join(names)}"
    return None


# --- one combo ----------------------------------------------------------------------------

@contextmanager
def seeded() -> Iterator[None]:
    """A forked random stream seeded with 0: every combo is checked alike, the caller's stream untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def compute(name: str, metric: Metric, combo: Combo, data: Dataset) -> tuple[Result, str]:
    """``metric.compute`` on ``combo`` trained one step on ``data``, its values checked against
    its columns; skipped when the metric cannot score the model or draws many samples."""
    reason = metric.mismatch(data, combo)
    if reason:
        return "skip", f"cannot score this model: {reason}"
    model = VAE(combo)
    train_step(model, data)
    model.eval()
    began = time.perf_counter()
    test = batch_of(data, "test", TEST_IMAGES)
    with torch.no_grad():
        terms = model(test, 1)
        posterior = terms.posterior
        codes = posterior.rsample(1)[0].long() if posterior.deterministic and combo.latent.is_codes else None
        kl = None if terms.kl is None else terms.kl.flatten(1).double().mean(0)
        no_density = combo.no_density
        evaluation = EvaluationPass(nelbo=None if no_density else negative_elbo(terms),
                                    nll=None if no_density else importance_nll(model, test, 2, 2),
                                    iw_samples=1 if posterior.deterministic else 2, kl=kl, codes=codes,
                                    seconds=time.perf_counter() - began, no_density=no_density)

    def draw(n: int) -> Samples:
        with torch.no_grad():
            return model.sample(n, data.context(None)).cpu(), None

    scoring = Scoring(model=model, data=data, test=data, device=torch.device("cpu"), seed=0, evaluation=evaluation,
                      draw=draw)  # the kit's data holds TEST_IMAGES test images: all of them are scored
    scoring.sample_count = metric.sample_count(scoring)
    if scoring.sample_count > CHEAP_SAMPLES:
        return "skip", f"draws {scoring.sample_count} samples; the kit computes metrics of up to {CHEAP_SAMPLES}"
    values = checked_values(name, metric, metric.compute(scoring))
    return "pass", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def one_line(exc: Exception) -> str:
    """An exception as the table shows it; vaereg's own errors (a failed check, the probe's) are
    one line already."""
    if isinstance(exc, VaeregError):
        return str(exc)
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"


def batch_of(data: Dataset, split: str, n: int) -> Batch:
    images = getattr(data, split)[:n]
    labels = getattr(data, f"{split}_labels")
    return data.batch(images, None if labels is None else labels[:n], train=split == "train")


def probe_check(model: VAE, data: Dataset) -> str:
    probe(model, data)
    return ""


def finite_scalar(value: Any, what: str) -> float:
    """``value`` as a float: a scalar tensor holding a finite number, else a failed check."""
    if not isinstance(value, torch.Tensor) or value.shape != ():
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise CheckFailed(f"{what} is {shape}, not a scalar tensor")
    number = float(value.detach())
    if not math.isfinite(number):
        raise CheckFailed(f"{what} is {number}, not finite")
    return number


def train_step(model: VAE, data: Dataset) -> str:
    """One optimiser step of every ``Step`` the objective declares, as the trainer takes it:
    each step's gradient from one forward pass before any optimiser moves."""
    objective = build_objective(model.combo)
    steps = objective.steps(model, model.stage_parameters(prior=False))
    if not steps:
        raise CheckFailed("the objective's steps() returned no step")
    trained = {id(p) for step in steps for p in step.parameters}
    for p in [*model.parameters(), *objective.parameters()]:
        p.requires_grad_(id(p) in trained)
    optimizers = [torch.optim.Adam(step.parameters, lr=step.lr or LR, betas=step.betas) for step in steps]
    before = [[p.detach().clone() for p in step.parameters] for step in steps]
    model.train()
    objective.train()
    terms = model(batch_of(data, "train", BATCH), objective.draws)
    losses = []
    for i, (step, optimizer) in enumerate(zip(steps, optimizers, strict=True)):
        loss, stats = step.loss(terms, 0.0)
        losses.append(f"{step.name} {finite_scalar(loss, f'step {step.name!r} loss'):.4g}")
        if i == 0 and "loss" not in stats:
            raise CheckFailed(f"the stats of step {step.name!r} lack 'loss'; return {{'loss': loss.detach(), ...}}")
        optimizer.zero_grad(set_to_none=True)
        if len(steps) == 1:
            loss.backward()
        else:
            loss.backward(inputs=step.parameters, retain_graph=i < len(steps) - 1)
    for optimizer in optimizers:
        optimizer.step()
    for step, old in zip(steps, before, strict=True):
        if not all(bool(p.detach().isfinite().all()) for p in step.parameters):
            raise CheckFailed(f"step {step.name!r} left non-finite weights")
        if all(torch.equal(p.detach(), q) for p, q in zip(step.parameters, old, strict=True)):
            raise CheckFailed(f"step {step.name!r} moved none of its {len(old)} parameters: its loss does not "
                              f"reach them")
    model.requires_grad_(True)
    return "loss: " + ", ".join(losses)


def prior_stage(model: VAE, data: Dataset) -> str:
    """The prior's own stage on the frozen encoder's latents: one gradient step, or its
    ``fit``; then the probe again, with the trained prior in use."""
    prior, wanted = model.prior, model.prior.prior_latents
    model.eval()
    batch = batch_of(data, "train", TRAIN_IMAGES)
    with torch.no_grad():
        posterior = model.encode(batch)
        draws = 1 if wanted.source == "mode" else wanted.draws
        latents = posterior.mode() if wanted.source == "mode" else posterior.rsample(draws).flatten(0, 1)
    labels = None if batch.context.label is None else batch.context.label.repeat(draws)
    context = data.context(labels)
    if model.combo.schedule == "fit":
        with torch.no_grad():
            history = prior.fit(latents, context)
        if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
            raise CheckFailed(f"fit() returned {type(history).__name__}; return one dict per iteration")
        done = f"fit: {len(history)} iteration(s)"
    else:
        parameters = model.stage_parameters(prior=True)
        optimizer = torch.optim.Adam(parameters, lr=LR)
        prior.train()
        loss = -prior.log_prob(latents, context).mean()
        done = f"loss {finite_scalar(loss, 'the prior stage loss'):.4g}"
        loss.backward()
        optimizer.step()
    model.prior_trained = True
    probe(model, data)
    return done


def nll_check(model: VAE, data: Dataset) -> str:
    """The negative ELBO and the K=2 importance-sampled NLL of a few test images: finite, one per
    image (for a model without a density, the values of its K=1 bound)."""
    model.eval()
    batch = batch_of(data, "test", TEST_IMAGES)
    with torch.no_grad():
        nelbo = negative_elbo(model(batch, 1))
        nll = importance_nll(model, batch, k=2, chunk=2)
    for what, value in (("negative ELBO", nelbo), ("NLL", nll)):
        if tuple(value.shape) != (TEST_IMAGES,):
            raise CheckFailed(f"the {what} of {TEST_IMAGES} images has shape {list(value.shape)}; expected "
                              f"[{TEST_IMAGES}], one per image")
        if not bool(value.isfinite().all()):
            bad = int((~value.isfinite()).sum())
            raise CheckFailed(f"the {what} is not finite for {bad} of {TEST_IMAGES} images")
    if model.combo.no_density:
        return f"no NLL ({model.combo.no_density}); its K=1 bound is finite"
    return f"NLL {float(nll.mean()):.2f} nats, -ELBO {float(nelbo.mean()):.2f}"

