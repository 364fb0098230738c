"""The docs' figures, rendered from the results rows they were made from.

A figure is a block in a page,

    <!-- figure: NAME -->
    ...
    <!-- /figure -->

whose text is rendered from the rows of one or more experiments. An experiment is an experiment
file, ``docs/figures/EXPERIMENT.toml`` (``vaereg eval --config`` reads it; its ``# machine:``
comment says where the rows were made), and the Parquet rows it made, ``docs/figures/EXPERIMENT/``.

    python docs/figures.py                   # rewrite every block from the committed rows
    python docs/figures.py --check           # exit 1 naming each block whose text differs
    python docs/figures.py --run EXPERIMENT  # run it into a fresh store, keep its rows, rewrite
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vaereg_harness.store.results import read_results

DOCS = Path(__file__).resolve().parent
FIGURES = DOCS / "figures"
BLOCK = re.compile(r"(<!-- figure: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figure -->)", re.S)
MACHINE = re.compile(r"^# machine: (?P<machine>.+)$", re.M)

Row = dict[str, Any]


# --- experiments: a TOML file and its rows ---------------------------------------------------


def experiment_names() -> list[str]:
    return sorted(path.stem for path in FIGURES.glob("*.toml"))


def toml_of(experiment: str) -> Path:
    path = FIGURES / f"{experiment}.toml"
    if not path.is_file():
        raise SystemExit(f"no experiment {experiment!r}; experiments: {', '.join(experiment_names())}")
    return path


def machine(experiment: str) -> str:
    """Where the experiment's rows were made: its file's ``# machine:`` comment."""
    found = MACHINE.search(toml_of(experiment).read_text(encoding="utf-8"))
    if found is None:
        raise ValueError(f"{toml_of(experiment)}: no '# machine: ...' comment saying where its rows were made")
    return found["machine"]


def rows(experiment: str) -> list[Row]:
    """The experiment's rows in its file's combo order, then by seed."""
    order = tomllib.loads(toml_of(experiment).read_text(encoding="utf-8"))["combo"]
    found = read_results(FIGURES / experiment).to_pylist()
    if not found:
        raise ValueError(f"docs/figures/{experiment}/ holds no rows; python docs/figures.py --run {experiment}")
    return sorted(found, key=lambda row: (order.index(row["combo"]), row["seed"]))


def only(values: list[Any], what: str) -> Any:
    """The one value every row shares; rows that differ cannot share a caption."""
    distinct = sorted({str(v) for v in values})
    if len(distinct) != 1:
        raise ValueError(f"the rows differ in {what} ({', '.join(distinct)}): rerun them together")
    return values[0]


def this_machine() -> str:
    """A one-line description of this machine, for the ``# machine:`` comment ``--run`` writes."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        cpu = model[1].strip() if model else cpu
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.machine()}"


# --- tables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One table column: its heading, the value a row gives it, how to show the value, and
    whether the best value (lowest or highest) is bold."""

    heading: str
    value: str | Callable[[Row], Any]
    show: str | Callable[[Row], str] = "{:.2f}"
    best: Literal["low", "high"] | None = None

    def of(self, row: Row) -> Any:
        return row[self.value] if isinstance(self.value, str) else self.value(row)

    def cell(self, row: Row) -> str:
        if self.of(row) is None:
            return "-"
        return self.show.format(self.of(row)) if isinstance(self.show, str) else self.show(row)


def table(rows: list[Row], columns: list[Column]) -> str:
    """A Markdown table of ``rows``, the best value of each ``best`` column in bold."""
    lines = ["| " + " | ".join(c.heading for c in columns) + " |", "|" + "---|" * len(columns)]
    best = {}
    for c in columns:
        values = [c.of(r) for r in rows if c.of(r) is not None]
        if c.best and values:
            best[c.heading] = min(values) if c.best == "low" else max(values)
    for row in rows:
        cells = []
        for c in columns:
            text = c.cell(row)
            cells.append(f"**{text}**" if c.heading in best and c.of(row) == best[c.heading] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def code(row: Row) -> str:
    return f"`{row['combo']}`"


def nll(row: Row, k: int) -> str:
    """The NLL, marked as a bound for a one-sample (deterministic) posterior or with its K when not ``k``."""
    if row["iw_samples"] == 1:
        return f"{row['nll_nats']:.2f} (bound)"
    return f"{row['nll_nats']:.2f}" + ("" if row["iw_samples"] == k else f" (K={row['iw_samples']})")


def latent_use(row: Row) -> str:
    """KL (per level) and active units of a continuous latent; the code perplexity of a discrete one."""
    if row["codebook_perplexity"] is not None:
        codes = json.loads(row["config"])["parts"]["encoder"].get("codes")
        return f"perplexity {row['codebook_perplexity']:.1f}" + (f" of {codes}" if codes else "")
    levels = json.loads(row["kl_per_level"] or "[]")
    if not levels:  # no closed-form KL: the rate is its one-draw estimate
        kl = f"KL {row['rate']:.1f} (one draw)"
    elif len(levels) == 1:
        kl = f"KL {levels[0]:.1f}"
    else:
        kl = "KL per level " + ", ".join(f"{v:.2f}" for v in levels)
    return f"{kl}; {row['active_units']} active units" if row["active_units"] is not None else kl


def small(value: float) -> str:
    """Two decimals, or two significant digits below 0.1 (an FID floor of 0.017)."""
    return f"{value:.2g}" if abs(value) < 0.1 else f"{value:.2f}"


def fid_caption(rows: list[Row]) -> str:
    extractor = only([r["fid_extractor"] for r in rows if r["fid"] is not None], "FID extractor")
    reference = only([r["fid_reference"] for r in rows if r["fid"] is not None], "FID reference")
    samples = only([r["fid_samples"] for r in rows if r["fid"] is not None], "FID samples")
    floor = only([r["fid_floor"] for r in rows if r["fid"] is not None], "FID floor")
    return (f"FID of {samples} samples against the {reference.removeprefix('test:')} test images under the "
            f"offline classifier `{extractor}`, whose floor FID(train, test) is {small(floor)}")


def made_on(experiments: list[str], rows: list[Row]) -> str:
    """The machine line of a figure: where its rows were made, on what device and thread count, and
    the settings every row shares (seed, epochs, batch size)."""
    where = only([machine(e) for e in experiments], "machine")
    threads = sorted({str(r["threads"]) for r in rows})
    if len(threads) == 1 and threads[0].isdigit():
        threads = f"`--threads {threads[0]}`"
    else:  # auto:LO-HI, the counts the load allowed
        counts = [int(n) for t in threads for n in t.removeprefix("auto:").split("-")]
        threads = f"`--threads auto` ({min(counts)} to {max(counts)} threads)"
    device = only([r["device"] for r in rows], "device")
    torch = only([r["torch_version"] for r in rows], "torch version")
    seeds = sorted({r["seed"] for r in rows})
    seed = f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))
    epochs = only([r["epochs"] for r in rows], "epochs")
    batch = only([r["batch_size"] for r in rows], "batch size")
    return (f"Rows made on {where}: {device}, {threads}, torch {torch}; {seed}, {epochs} "
            f"epoch{'s' if epochs > 1 else ''} of batch {batch}")


# --- the figures -----------------------------------------------------------------------------

QUALITY = [Column("combo", "combo", code), Column("-ELBO", "nelbo_nats")]


def digits_combos() -> str:
    made = rows("digits-combos") + rows("digits-pixelvae")
    k = statistics.mode(r["iw_samples"] for r in made)
    columns = [*QUALITY, Column("NLL (nats)", "nll_nats", lambda r: nll(r, k), "low"),
               Column("bits/dim", "nll_bpd", "{:.3f}"), Column("FID", "fid", best="low"),
               Column("latent use", latent_use, "{}")]
    return (f"{made_on(['digits-combos', 'digits-pixelvae'], made)}, all defaults; NLL with K={k} importance "
            f"samples (a bound with K=1 for deterministic posteriors); "
            f"{fid_caption(made)}.\n\n{table(made, columns)}\n")


def digits_bitwise() -> str:
    row = only(rows("digits-bitwise"), "rows")
    return (f"With the thread count fixed (`--threads 1`), the run of "
            f"[`digits-bitwise.toml`](../figures/digits-bitwise.toml) (`gaussian`, {row['epochs']} epochs, no FID, "
            f"K={row['iw_samples']}) gives the NLL and -ELBO {row['nll_nats']!r} and {row['nelbo_nats']!r} on "
            f"{machine('digits-bitwise')} with torch {row['torch_version']}, to the last bit, every time.\n")


def digits_priors() -> str:
    made = [r for r in rows("digits-combos") if r["combo"] == "gaussian"] + rows("digits-priors")
    k = only([r["iw_samples"] for r in made], "K")
    columns = [*QUALITY, Column("NLL (nats)", "nll_nats", best="low"), Column("bits/dim", "nll_bpd", "{:.3f}"),
               Column("FID", "fid", best="low"), Column("latent use", latent_use, "{}")]
    return (f"{made_on(['digits-combos', 'digits-priors'], made)}; K={k}, "
            f"{fid_caption(made)}.\n\n{table(made, columns)}\n")


def digits_conditional() -> str:
    made = rows("digits-conditional")
    plain = {r["combo"]: r for r in rows("digits-combos")}
    k = only([r["iw_samples"] for r in made if r["iw_samples"] > 1], "K")
    columns = [*QUALITY, Column("NLL -log p(x\\|y)", "nll_nats", lambda r: nll(r, k), "low"),
               Column("FID", "fid", best="low"),
               Column("label acc.", "condition_accuracy", "{:.1%}", "high"),
               Column("latent use", latent_use, "{}"),
               Column("unconditional NLL", lambda r: plain[r["combo"]]["nll_nats"]),
               Column("unconditional FID", lambda r: plain[r["combo"]]["fid"])]
    return (f"{made_on(['digits-conditional'], made)}; K={k}, {fid_caption(made)}. "
            f"The unconditional columns are the same combos' rows in the table of every built-in combo "
            f"([Your first combo](first-combo.md#every-built-in-combo-on-digits)).\n\n{table(made, columns)}\n")


def fashion_phases() -> str:
    row = only(rows("fashion-phases"), "rows")
    phases = [
        ("FID classifier (690 steps of 64, then its test accuracy)", row["fid_extractor_seconds"],
         f"accuracy {row['fid_extractor_accuracy']:.1%} on the test images"),
        (f"training, {row['epochs']} epoch{'s' if row['epochs'] > 1 else ''} of the training split",
         row["train_seconds"], f"{row['train_images_per_s']:.0f} images/s"),
        (f"evaluation, {row['eval_images']} test images x K={row['iw_samples']}", row["eval_seconds"],
         f"NLL {row['nll_nats']:.2f} nats, {row['nll_bpd']:.3f} bits/dim"),
        (f"FID, {row['fid_samples']} samples against the {row['fid_reference'].removeprefix('test:')} test images",
         row["fid_seconds"], f"FID {row['fid']:.2f}, floor {small(row['fid_floor'])}"),
    ]
    lines = ["| phase | seconds | |", "|---|---|---|"]
    lines += [f"| {phase} | {seconds:.1f} | {what} |" for phase, seconds, what in phases]
    total = sum(seconds for _, seconds, _ in phases) / 60
    return (f"{made_on(['fashion-phases'], [row])}; one run, with an empty cache, on a machine other jobs "
            f"shared. Its phases, {total:.0f} minutes in all:\n\n" + "\n".join(lines) + "\n")


def short_note(note: str | None) -> str:
    """A row's ``nll_note``, abbreviated for a table cell."""
    if not note:
        return ""
    if "deterministic encoder" in note:
        return "no density: deterministic encoder"
    ssim = re.match(r"MS-SSIM with (\d+) scales and a (\S+) window", note)
    if ssim:
        return f"no density: MS-SSIM ({ssim[1]} scales, window {ssim[2]}) is a score"
    return note


def zoo_fashion_mnist() -> str:
    made = rows("zoo-fashion-mnist")
    made.sort(key=lambda r: (r["nll_nats"] is None, r["nll_nats"] or 0.0))
    k = only([r["iw_samples"] for r in made if r["nll_nats"] is not None], "K")
    columns = [Column("combo", "combo", code), Column("NLL (nats)", "nll_nats", "{:.1f}", "low"),
               Column("bits/dim", "nll_bpd", "{:.3f}"), Column("-ELBO", "nelbo_nats", "{:.1f}"),
               Column("FID", "fid", best="low"), Column("train s", "train_seconds", "{:.0f}"),
               Column("eval s", "eval_seconds", "{:.0f}"), Column("note", lambda r: short_note(r["nll_note"]), "{}")]
    return (f"{made_on(['zoo-fashion-mnist'], made)}; seconds are wall-clock on that machine, which other "
            f"jobs shared for most of the sweep. NLL with K={k}; {fid_caption(made)}.\n\n{table(made, columns)}\n")


def shapes_label(row: Row) -> str:
    beta = json.loads(row["config"])["objective"].get("beta")
    return f"{row['combo']} (beta {beta:g})" if row["combo"] in ("gaussian", "beta-vae") and beta else row["combo"]


def spread(values: list[float], digits: int) -> str:
    """The mean ± the sample standard deviation over seeds."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


# (heading, column, decimals): scores in [0, 1] to 3 decimals, nats to 1
SHAPES = [("MIG", "mig", 3), ("DCI-D", "dci_disentanglement", 3), ("DCI-C", "dci_completeness", 3),
          ("SAP", "sap", 3), ("beta-VAE", "betavae", 3), ("FactorVAE", "factorvae", 3), ("NLL (nats)", "nll_nats", 1),
          ("rate", "rate", 1), ("distortion", "distortion", 1)]


def shapes_disentanglement() -> str:
    models: dict[str, list[Row]] = {}
    made = rows("shapes-disentanglement")
    for row in made:
        models.setdefault(shapes_label(row), []).append(row)
    lines = ["| model | seeds | " + " | ".join(h for h, _, _ in SHAPES) + " |", "|---|---|" + "---|" * len(SHAPES)]
    for name, group in models.items():
        cells = [spread([r[c] for r in group if r[c] is not None], digits) for _, c, digits in SHAPES]
        lines.append(f"| `{name}` | {len(group)} | " + " | ".join(cells) + " |")
    return f"{made_on(['shapes-disentanglement'], made)}.\n\n" + "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Figure:
    page: str  # under docs/
    render: Callable[[], str]


REGISTRY = {
    "digits-combos": Figure("tutorials/first-combo.md", digits_combos),
    "digits-bitwise": Figure("tutorials/first-combo.md", digits_bitwise),
    "digits-priors": Figure("tutorials/first-combo.md", digits_priors),
    "digits-conditional": Figure("tutorials/conditioning.md", digits_conditional),
    "fashion-phases": Figure("tutorials/real-data.md", fashion_phases),
    "zoo-fashion-mnist": Figure("zoo.md", zoo_fashion_mnist),
    "shapes-disentanglement": Figure("metrics.md", shapes_disentanglement),
}


# --- pages -----------------------------------------------------------------------------------


def blocks(text: str) -> list[str]:
    """The names of the figure blocks in a page's ``text``, in order."""
    return [m["name"] for m in BLOCK.finditer(text)]


def rendered(text: str, page: str) -> tuple[str, list[str]]:
    """``text`` with every block rewritten from its rows, and the names of the blocks that changed.
    A block naming no known figure, or one in a page the figure does not belong to, is an error."""
    changed = []

    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in REGISTRY or REGISTRY[name].page != page:
            raise ValueError(f"docs/{page}: block 'figure: {name}' names no figure of this page; "
                             f"figures: {', '.join(f for f, fig in REGISTRY.items() if fig.page == page) or 'none'}")
        body = REGISTRY[name].render()
        if body != match["body"]:
            changed.append(name)
        return match[1] + body + match[4]

    return BLOCK.sub(fill, text), changed


def pages() -> list[str]:
    return sorted({figure.page for figure in REGISTRY.values()})


def rewrite(check: bool, docs: Path = DOCS) -> list[str]:
    """Rewrite (or with ``check`` only compare) every page's blocks; the ``page: figure`` that differed."""
    differing = []
    for page in pages():
        path = docs / page
        text, changed = rendered(path.read_text(encoding="utf-8"), page)
        missing = [name for name, fig in REGISTRY.items() if fig.page == page and name not in blocks(text)]
        if missing:
            raise ValueError(f"docs/{page}: no block for the figure(s) {', '.join(missing)}")
        differing += [f"docs/{page}: {name}" for name in changed]
        if changed and not check:
            path.write_text(text, encoding="utf-8")
    return differing


def run(experiment: str) -> None:
    """Run ``experiment``'s file into a fresh store and cache, then replace its rows with the new ones
    and its ``# machine:`` comment with this machine."""
    path = toml_of(experiment)
    with tempfile.TemporaryDirectory(prefix=f"figures-{experiment}-") as tmp:
        store = Path(tmp) / "results"
        done = subprocess.run([sys.executable, "-m", "vaereg_harness.cli", "eval", "--config", str(path), "--quiet",
                               "--results", str(store), "--out", str(Path(tmp) / "runs"),
                               "--cache-dir", str(Path(tmp) / "cache")], cwd=DOCS.parent)
        if done.returncode != 0:
            raise SystemExit(f"vaereg eval --config {path} exited {done.returncode}; docs/figures/{experiment}/ "
                             "is unchanged")
        folder = FIGURES / experiment
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.parquet"):
            old.unlink()
        for new in store.glob("*.parquet"):
            shutil.copy2(new, folder / new.name)
    text = path.read_text(encoding="utf-8")
    line = f"# machine: {this_machine()}"
    path.write_text(MACHINE.sub(line, text) if MACHINE.search(text) else f"{line}\n{text}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 naming each block that differs")
    parser.add_argument("--run", metavar="EXPERIMENT", help="run docs/figures/EXPERIMENT.toml afresh first")
    args = parser.parse_args(argv)
    if args.run:
        run(args.run)
    try:
        differing = rewrite(check=args.check)
    except ValueError as exc:  # a block naming no figure, a figure without rows, rows that cannot share a caption
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in differing:
        print(f"{name}: {'differs from its rows' if args.check else 'rewritten'}")
    return 1 if args.check and differing else 0


if __name__ == "__main__":
    sys.exit(main())
