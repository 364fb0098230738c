"""``vaereg report``: one self-contained HTML page and its Markdown twin from a results store
and the run folders its rows name. Per data set: a leaderboard sortable by any column, NLL
against FID, the training curves of the metrics logs, and the sample and reconstruction grids
side by side. The leaderboard's columns are ``vaereg results``' (``vaereg_harness.store.leaderboard``),
plugin metrics' included. Where ``vaereg search`` keeps Optuna studies beside the results store,
each study follows (``vaereg_harness.store.studies``). Figures are drawn with matplotlib; the page
embeds every image, so it opens from disk with no server, and ``report.md`` links the same images
from ``figures/``."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from vaereg import UsageError
from vaereg_harness.data import safe_name
from vaereg_harness.store.files import atomic_write, make_folder
from vaereg_harness.store.leaderboard import Shown, table_columns
from vaereg_harness.store.results import read_results

if TYPE_CHECKING:
    from vaereg_harness.store.studies import StudyPart

GRIDS = [("samples_png", "samples (sampled pixels)"), ("samples_mean_png", "samples (likelihood mean)"),
         ("reconstructions_png", "reconstructions, likelihood mean (originals above)"),
         ("traversals_png", "latent traversals from -3 to 3 prior std, most active dimensions first (one per row)"),
         ("interpolations_png", "interpolations between test images' posterior means (originals at the ends)"),
         ("factor_mi_png", "mutual information (nats) between latent dimensions and factors")]


@dataclass
class Image:
    """A figure of the report: a file under ``figures/`` and its caption."""

    path: Path
    caption: str


def run_label(row: dict[str, Any]) -> str:
    return f"{row['combo']} (seed {row['seed']})"


def plain(text: str) -> str:
    """``text`` for a matplotlib label, drawn as written: a ``$`` never starts mathtext."""
    return text.replace("$", r"\$")


def short_hash(text: str) -> str:
    """Eight hex digits that tell apart names ``safe_name`` maps to the same file name."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def file_stem(text: str) -> str:
    """A figure file name's stem for ``text``, unique per ``text`` and short enough for any file system."""
    return f"{safe_name(text)[:60]}-{short_hash(text)}"


@dataclass
class Log:
    """A run's ``metrics.jsonl`` as the report reads it: per stage, (epoch, mean training loss),
    and how many lines were damaged (not UTF-8 JSON, not an object, or a ``stage``, ``epoch`` or
    ``loss`` of the wrong type) and skipped."""

    curves: dict[str, list[tuple[int, float]]]
    damaged: int


def loss_point(line: bytes) -> tuple[str, int, float | None] | None:
    """(stage, epoch, loss) of one ``metrics.jsonl`` line, loss None where the record has none;
    None for a damaged line."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8 or not JSON: binary bytes, a line cut short by a kill
        return None
    if not isinstance(record, dict):
        return None
    stage, epoch, loss = record.get("stage"), record.get("epoch"), record.get("loss")
    if not isinstance(stage, str) or isinstance(epoch, bool) or not isinstance(epoch, int):
        return None
    if loss is not None and (isinstance(loss, bool) or not isinstance(loss, int | float)):
        return None
    return stage, epoch, loss


def read_log(path: Path) -> Log:
    """``path``'s training curves, damaged lines skipped and counted; a resumed run's repeated
    epochs keep their last record."""
    stages: dict[str, dict[int, float]] = {}
    damaged = 0
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        point = loss_point(line)
        if point is None:
            damaged += 1
        elif point[2] is not None:
            stages.setdefault(point[0], {})[point[1]] = point[2]
    return Log({stage: sorted(points.items()) for stage, points in stages.items()}, damaged)


def read_logs(rows: list[dict[str, Any]]) -> dict[Path, tuple[str, Log]]:
    """Each run folder's label and log, for the rows whose folder holds a ``metrics.jsonl``."""
    logs = {}
    for r in rows:
        folder = Path(r["run_dir"]) if r.get("run_dir") else None
        if folder is not None and folder not in logs and (folder / "metrics.jsonl").is_file():
            logs[folder] = (run_label(r), read_log(folder / "metrics.jsonl"))
    return logs


def damage_notes(logs: dict[Path, tuple[str, Log]]) -> list[str]:
    """One line per run whose log had damaged lines."""
    return [f"{label}: skipped {log.damaged} damaged line{'s' if log.damaged > 1 else ''} of "
            f"{folder / 'metrics.jsonl'}" for folder, (label, log) in logs.items() if log.damaged]


def save_figure(draw: Callable[[Figure], None], path: Path, size: tuple[float, float]) -> Path:
    figure = Figure(figsize=size, layout="constrained")
    draw(figure)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png"))


def scatter(rows: list[dict[str, Any]], path: Path) -> Image | None:
    scored = [r for r in rows if r.get("nll_nats") is not None and r.get("fid") is not None]
    if not scored:
        return None

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        ax.scatter([r["fid"] for r in scored], [r["nll_nats"] for r in scored], color="tab:blue")
        for r in scored:
            ax.annotate(plain(run_label(r)), (r["fid"], r["nll_nats"]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        ax.set_xlabel("FID (lower is better)")
        ax.set_ylabel("NLL, nats (lower is better)")
        ax.grid(alpha=0.3)

    extractors = sorted({r["fid_extractor"] for r in scored})
    note = "; FIDs under different extractors are not comparable" if len(extractors) > 1 else ""
    return Image(save_figure(draw, path, (6.4, 4.4)), f"NLL against FID, extractor {', '.join(extractors)}{note}")


def training_curves(logs: dict[Path, tuple[str, Log]], path: Path) -> Image | None:
    runs = {folder: (label, log.curves) for folder, (label, log) in logs.items()}
    stages = sorted({stage for _, by_stage in runs.values() for stage in by_stage},
                    key=lambda s: (s != "autoencoder", s))
    if not stages:
        return None

    def draw(figure: Figure) -> None:
        axes = figure.subplots(1, len(stages), squeeze=False)[0]
        for ax, stage in zip(axes, stages, strict=True):
            for i, (label, by_stage) in enumerate(runs.values()):  # one colour per run in every panel
                if by_stage.get(stage):
                    epochs, losses = zip(*by_stage[stage], strict=True)
                    ax.plot(epochs, losses, marker="o", markersize=3, label=plain(label), color=f"C{i % 10}")
            ax.set_title(plain(f"{stage} stage"))
            ax.set_xlabel("epoch")
            ax.set_ylabel("training loss (mean per image)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)

    return Image(save_figure(draw, path, (6.4 * len(stages), 4.4)), "training loss per epoch, from metrics.jsonl")


def grids(rows: list[dict[str, Any]], figures: Path) -> list[tuple[str, list[Image]]]:
    """Each run's grids, in the order of ``rows`` (one per run folder), copied under ``figures``."""
    shown: dict[Path | str, tuple[str, list[Image]]] = {}
    for r in rows:
        key = r["run_dir"] or r["run_id"]
        if key in shown:
            continue
        images = []
        for column, caption in GRIDS:
            source = Path(r[column]) if r.get(column) else None
            if source is not None and source.is_file():
                copy = figures / f"{file_stem(str(source.parent))}-{source.name}"
                atomic_write(copy, lambda tmp, source=source: shutil.copyfile(source, tmp))
                images.append(Image(copy, caption))
        if images:
            shown[key] = (run_label(r), images)
    return list(shown.values())


@dataclass
class Section:
    """One data set's part of the report."""

    dataset: str
    rows: list[dict[str, Any]]
    columns: list[Shown]  # the leaderboard's
    plots: list[Image]
    grids: list[tuple[str, list[Image]]]
    notes: list[str]  # one line per run whose metrics log had damaged lines


def sections(rows: list[dict[str, Any]], figures: Path) -> list[Section]:
    result = []
    for dataset in sorted({r["dataset"] for r in rows}):
        mine = sorted((r for r in rows if r["dataset"] == dataset),
                      key=lambda r: (r.get("nll_nats") is None, r.get("nll_nats") or 0.0))
        stem = file_stem(dataset)  # data sets whose names differ only in punctuation get their own figures
        logs = read_logs(mine)
        plots = [scatter(mine, figures / f"{stem}-nll-fid.png"), training_curves(logs, figures / f"{stem}-curves.png")]
        columns = [c for c in table_columns(mine) if c.name != "dataset"]  # the section names it
        result.append(Section(dataset, mine, columns, [p for p in plots if p], grids(mine, figures),
                              damage_notes(logs)))
    return result


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


SORT_SCRIPT = """
document.querySelectorAll("table.board th").forEach((th, i) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], up = th.dataset.order !== "up";
  th.closest("tr").querySelectorAll("th").forEach(h => delete h.dataset.order);
  th.dataset.order = up ? "up" : "down";
  const key = tr => { const v = tr.cells[i].dataset.v; return v === "" ? null : isNaN(v) ? v : Number(v); };
  [...body.rows].sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === null || y === null) return (x === null) - (y === null);
    return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
  }).forEach(tr => body.appendChild(tr));
}));
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table.board { border-collapse: collapse; font-size: 0.9em; }
table.board th, table.board td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
table.board th { background: #eef; cursor: pointer; user-select: none; }
table.board th[data-order="up"]::after { content: " \\25B2"; }
table.board th[data-order="down"]::after { content: " \\25BC"; }
table.board td:first-child, table.board th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { image-rendering: pixelated; max-width: 100%; } figcaption { font-size: 0.85em; color: #555; }
"""


def sort_value(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if value is None:
        return ""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def figure_html(image: Image) -> str:
    e = html.escape
    return f"<figure><img src='{data_uri(image.path)}' alt='{e(image.caption)}'><figcaption>{e(image.caption)}" \
           "</figcaption></figure>"


def studies_html(studies: Sequence[StudyPart]) -> list[str]:
    """Each study's part of the page: its summary and notes, its trials' sortable table and its figures."""
    e = html.escape
    out = []
    for s in studies:
        out.append(f"<h2>Study {e(s.name)}</h2><p>{e(s.summary)}</p>")
        out += [f"<p class='note'>{e(note)}</p>" for note in s.notes]
        if s.headings:
            out.append("<table class='board'><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in s.headings)
                       + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td data-v='{e(c.sort)}'>{e(c.text)}</td>" for c in row) + "</tr>"
                    for row in s.rows]
            out.append("</tbody></table>")
        out += [figure_html(image) for image in s.plots]
    return out


def render_html(title: str, parts: list[Section], studies: Sequence[StudyPart] = (), notes: Sequence[str] = ()
                ) -> str:
    """The page: each data set's section, then each study's; ``notes``: lines on the studies file."""
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{STYLE}</style>"
           f"</head><body><h1>{e(title)}</h1>"]
    for s in parts:
        out.append(f"<h2>{e(s.dataset)}</h2>")
        out += [f"<p class='note'>{e(note)}</p>" for note in s.notes]
        out.append("<p>Leaderboard, best NLL first; click a column to sort.</p>")
        out.append("<table class='board'><thead><tr>" + "".join(f"<th>{e(c.heading)}</th>" for c in s.columns)
                   + "</tr></thead><tbody>")
        for r in s.rows:
            out.append("<tr>" + "".join(f"<td data-v='{e(sort_value(r, c.name))}'>{e(c.cell(r))}</td>"
                                        for c in s.columns) + "</tr>")
        out.append("</tbody></table>")
        out += [figure_html(image) for image in s.plots]
        if s.grids:
            out.append("<h3>Samples and reconstructions</h3>")
        for label, images in s.grids:
            out.append(f"<h4>{e(label)}</h4><div>")
            out += [figure_html(i) for i in images]
            out.append("</div>")
    out += studies_html(studies)
    out += [f"<p class='note'>{e(note)}</p>" for note in notes]
    out.append(f"<script>{SORT_SCRIPT}</script></body></html>")
    return "\n".join(out)


MARKDOWN_SPECIAL = re.compile(r"([\\`*_~\[\]|])")


def md(text: str) -> str:
    """``text`` as inline Markdown that stays one table cell or heading and renders as written:
    line breaks become spaces, HTML's ``<``, ``>`` and ``&`` become entities, and Markdown's
    metacharacters (``\\ ` * _ ~ [ ] |``) are backslash-escaped."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(" ".join(str(text).splitlines()), quote=False))


def render_markdown(title: str, parts: list[Section], root: Path, studies: Sequence[StudyPart] = (),
                    notes: Sequence[str] = ()) -> str:
    """``render_html``'s twin, linking the figures under ``root``."""
    def link(i: Image) -> str:
        return f"![{md(i.caption)}]({i.path.relative_to(root).as_posix()})"

    out = [f"# {md(title)}"]
    for s in parts:
        out.append(f"\n## {md(s.dataset)}\n")
        out += [f"{md(note)}\n" for note in s.notes]
        out += ["| " + " | ".join(md(c.heading) for c in s.columns) + " |", "|" + "---|" * len(s.columns)]
        out += ["| " + " | ".join(md(c.cell(r)) for c in s.columns) + " |" for r in s.rows]
        out += [f"\n{link(i)}\n\n*{md(i.caption)}*" for i in s.plots]
        if s.grids:
            out.append("\n### Samples and reconstructions")
        for label, images in s.grids:
            out.append(f"\n#### {md(label)}\n")
            out.append(" ".join(link(i) for i in images))
            out.append("\n" + " · ".join(md(i.caption) for i in images))
    for s in studies:
        out.append(f"\n## Study {md(s.name)}\n\n{md(s.summary)}\n")
        out += [f"{md(note)}\n" for note in s.notes]
        if s.headings:
            out += ["| " + " | ".join(md(h) for h in s.headings) + " |", "|" + "---|" * len(s.headings)]
            out += ["| " + " | ".join(md(c.text) for c in row) + " |" for row in s.rows]
        out += [f"\n{link(i)}\n\n*{md(i.caption)}*" for i in s.plots]
    out += [f"\n{md(note)}" for note in notes]
    return "\n".join(out) + "\n"


def write_report(results: Path, out: Path, title: str = "vaereg report",
                 on_skip: Callable[[Path, str], None] | None = None) -> tuple[Path, Path]:
    """Write ``out/index.html`` and ``out/report.md`` (figures in ``out/figures``), with a part per
    Optuna study of ``vaereg search`` where its studies file is beside ``results``; unreadable
    results files are skipped and reported to ``on_skip``."""
    rows = read_results(results, on_skip).to_pylist()
    if not rows:
        raise UsageError(f"--results {results}: no rows to report; run 'vaereg eval' first or give another folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: a file is in the way; give a folder for the report")
    make_folder(out, "--out")
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    parts = sections(rows, figures)
    from vaereg_harness.store.studies import read_studies  # it draws with this module's helpers

    studies, notes = read_studies(results, rows, figures)
    page = atomic_write(out / "index.html",
                        lambda tmp: tmp.write_text(render_html(title, parts, studies, notes), encoding="utf-8"))
    markdown = render_markdown(title, parts, out, studies, notes)
    twin = atomic_write(out / "report.md", lambda tmp: tmp.write_text(markdown, encoding="utf-8"))
    return page, twin
