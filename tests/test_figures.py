"""The docs' figures cannot go stale: every figure block equals its rendering from the committed rows
(``docs/figures.py``), an edited number fails the check, and (slow) the main command's printed
figures lie in the ranges docs/getting-started.md states, and the ``--threads 1`` figures repeat
bit for bit."""

import importlib.util
import re
import shutil
import statistics
import subprocess
import sys
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from tests.conftest import vaereg_cli

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
_spec = importlib.util.spec_from_file_location("figures", DOCS / "figures.py")
figures = sys.modules.setdefault("figures", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(figures)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


def test_every_block_equals_its_rendering_from_the_rows():
    assert figures.rewrite(check=True) == []
    done = subprocess.run([sys.executable, str(DOCS / "figures.py"), "--check"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_block_names_a_known_figure_once_in_its_page():
    named = {}
    for page in sorted(DOCS.rglob("*.md")):
        for name in figures.blocks(page.read_text(encoding="utf-8")):
            assert name in figures.REGISTRY, f"{page}: unknown figure {name!r}"
            assert name not in named, f"figure {name!r} in {named.get(name)} and {page}"
            named[name] = page.relative_to(DOCS).as_posix()
    assert named == {name: figure.page for name, figure in figures.REGISTRY.items()}


def test_every_experiment_has_the_rows_its_file_makes():
    experiments = figures.experiment_names()
    assert {"digits-combos", "zoo-fashion-mnist", "shapes-disentanglement"} <= set(experiments)
    for name in experiments:
        spec = tomllib.loads((DOCS / "figures" / f"{name}.toml").read_text(encoding="utf-8"))
        assert figures.machine(name), name
        files = sorted((DOCS / "figures" / name).glob("*.parquet"))
        assert files, f"docs/figures/{name}/ holds no rows"
        rows = [r for f in files for r in pq.read_table(f).to_pylist()]
        seeds = spec.get("seed", 0)
        runs = spec["combo"] * (len(seeds) if isinstance(seeds, list) else 1)
        assert sorted(r["combo"] for r in rows) == sorted(runs), name
        assert all(r["dataset"].startswith(spec["dataset"]) for r in rows), name  # with its options: shapes-positions6
        assert {r["epochs"] for r in rows} == {spec["epochs"]}, name
        if "threads" in spec:
            assert {r["threads"] for r in rows} == {str(spec["threads"])}, name


def copied_pages(tmp_path: Path) -> Path:
    for page in figures.pages():
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DOCS / page, tmp_path / page)
    return tmp_path


def test_an_edited_number_fails_the_check_and_a_rewrite_restores_it(tmp_path):
    docs = copied_pages(tmp_path)
    page = docs / "zoo.md"
    text = page.read_text(encoding="utf-8")
    block = re.search(r"<!-- figure: zoo-fashion-mnist -->.*?<!-- /figure -->", text, re.S)
    row = re.search(r"^\| `gaussian` \| (\d+\.\d)", block[0], re.M)
    edited = f"{float(row[1]) + 0.1:.1f}"
    page.write_text(text.replace(row[0], row[0].replace(row[1], edited)), encoding="utf-8")
    assert figures.rewrite(check=True, docs=docs) == ["docs/zoo.md: zoo-fashion-mnist"]
    assert figures.rewrite(check=False, docs=docs) == ["docs/zoo.md: zoo-fashion-mnist"]
    assert page.read_text(encoding="utf-8") == text
    assert figures.rewrite(check=True, docs=docs) == []


def test_a_block_naming_no_figure_of_its_page_is_refused(tmp_path):
    docs = copied_pages(tmp_path)
    page = docs / "metrics.md"
    page.write_text(page.read_text(encoding="utf-8") + "\n<!-- figure: digits-combos -->\n<!-- /figure -->\n",
                    encoding="utf-8")
    with pytest.raises(ValueError, match="digits-combos.*names no figure of this page"):
        figures.rewrite(check=True, docs=docs)


def test_a_table_cell_is_the_mean_and_spread_of_the_rows():
    rows = [r for f in (DOCS / "figures" / "shapes-disentanglement").glob("*.parquet")
            for r in pq.read_table(f).to_pylist() if r["combo"] == "btcvae"]
    mig = [r["mig"] for r in rows]
    expected = f"{sum(mig) / len(mig):.3f} ± {statistics.stdev(mig):.3f}"
    line = next(line for line in figures.shapes_disentanglement().splitlines() if line.startswith("| `btcvae` |"))
    assert line.split(" | ")[2] == expected
    assert figures.table([{"x": 2.0}, {"x": 1.0}], [figures.Column("x", "x", best="low")]).splitlines()[2:] == \
        ["| 2.00 |", "| **1.00** |"]


# --- the main command against its ranges (slow) ----------------------------------------------


def printed(text: str) -> dict[str, str]:
    """Heading -> cell of the first row of the plain-text table in ``text`` (headings right-aligned
    over their cells, separated by two spaces or more)."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("combo "))
    header, row = lines[at], lines[at + 1]
    return {m[0]: row[:m.end()].split()[-1] for m in re.finditer(r"\S+(?: \S+)*", header)}


def stated_ranges() -> dict[str, tuple[float, float]]:
    """The ranges docs/getting-started.md states, from its ``| printed | range ... |`` table."""
    text = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    found = re.findall(r"^\| (.+?) \| ([\d.]+) to ([\d.]+) \|$", text, re.M)
    return {heading: (float(lo), float(hi)) for heading, lo, hi in found}


def outside(figures_printed: dict[str, str], ranges: dict[str, tuple[float, float]]) -> list[str]:
    return [f"{h} {figures_printed[h]} not in {lo}-{hi}" for h, (lo, hi) in ranges.items()
            if not lo <= float(figures_printed[h]) <= hi]


def test_the_pages_example_row_is_inside_its_ranges():
    ranges = stated_ranges()
    assert set(ranges) == {"-ELBO", "NLL", "bits/dim", "K", "FID", "FID floor"}
    assert outside(printed((DOCS / "getting-started.md").read_text(encoding="utf-8")), ranges) == []


@pytest.mark.slow
def test_the_main_command_prints_figures_inside_the_pages_ranges(tmp_path):
    done = vaereg_cli("eval", "--combo", "gaussian", "--threads", "1", "--quiet", cwd=tmp_path)
    assert outside(printed(done.stdout), stated_ranges()) == []


@pytest.mark.slow
def test_the_threads_1_figures_repeat_bit_for_bit(tmp_path):
    committed = figures.only(figures.rows("digits-bitwise"), "rows")
    if committed["torch_version"] != torch.__version__:
        pytest.skip(f"the rows were made with torch {committed['torch_version']}, this is {torch.__version__}")
    vaereg_cli("eval", "--config", str(DOCS / "figures" / "digits-bitwise.toml"), "--quiet", "--results", "rows",
               cwd=tmp_path)
    fresh = pq.read_table(next((tmp_path / "rows").glob("*.parquet"))).to_pylist()[0]
    assert (fresh["nll_nats"], fresh["nelbo_nats"]) == (committed["nll_nats"], committed["nelbo_nats"])
