"""``vaereg report``: the page and its Markdown twin from a real results store, rendered in
headless Chromium where it is installed (and required where VAEREG_REQUIRE_CHROMIUM is set, as in CI)."""

import base64
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from tests.conftest import vaereg_cli
from vaereg_harness.store.leaderboard import table_columns
from vaereg_harness.store.results import read_results


class Page(HTMLParser):
    """The leaderboard's headings and body cells, and every image source."""

    def __init__(self):
        super().__init__()
        self.headings, self.rows, self.images, self.in_body, self.in_heading = [], [], [], False, False

    def handle_data(self, data):
        if self.in_heading:
            self.headings.append(data)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.in_heading = tag == "th"
        if tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_body:
            self.rows.append([])
        elif tag == "td" and self.in_body:
            self.rows[-1].append(attrs["data-v"])
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        self.in_heading = False
        if tag == "tbody":
            self.in_body = False


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    vaereg_cli("eval", "--combo", "gaussian-mlp", "--combo", "vq", "--epochs", "2", "--iw-samples", "5",
               "--fid-samples", "100", "--quiet", cwd=root)
    return root


def page_of(path):
    page = Page()
    page.feed(path.read_text())
    return page


def test_the_report_holds_the_leaderboard_plots_and_grids_of_every_run(evaluated):
    rows = read_results(evaluated / "vaereg-results").to_pylist()
    out = vaereg_cli("report", "--out", "rep", cwd=evaluated).stdout
    assert "rep/index.html" in out
    page = page_of(evaluated / "rep" / "index.html")
    # the columns of `vaereg results`, less the data set each section is about
    assert page.headings == [c.heading for c in table_columns(rows) if c.name != "dataset"]
    nll_column = 5
    assert page.headings[nll_column] == "NLL"
    best_first = sorted(rows, key=lambda r: r["nll_nats"])
    assert [float(r[nll_column]) for r in page.rows] == [r["nll_nats"] for r in best_first]
    assert [r[0] for r in page.rows] == [r["combo"] for r in best_first]
    # self-contained: every image is embedded, and each is a PNG: 2 plots, 3 grids for each of 2 runs, and
    # the gaussian-mlp run's traversals and interpolations (a code latent has none)
    assert len(page.images) == 2 + 3 * 2 + 2 and all(src.startswith("data:image/png;base64,") for src in page.images)
    for src in page.images:
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    md = (evaluated / "rep" / "report.md").read_text()
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert len(links) == 10 and all((evaluated / "rep" / link).is_file() for link in links)
    assert all(f"{r['nll_nats']:.2f}" in md for r in rows)


def test_a_report_survives_runs_whose_folders_are_gone_and_refuses_an_empty_store(evaluated, tmp_path):
    shutil.copytree(evaluated / "vaereg-results", tmp_path / "rows")
    vaereg_cli("report", "--results", "rows", "--out", "rep", cwd=tmp_path)  # the run folders are elsewhere
    page = page_of(tmp_path / "rep" / "index.html")
    assert len(page.rows) == 2 and len(page.images) == 1  # the NLL-FID scatter only: no curves, no grids
    proc = vaereg_cli("report", "--results", "empty", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no rows to report" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def browser() -> str:
    """The Chromium binary. Without one the test skips, or fails where VAEREG_REQUIRE_CHROMIUM is
    set: CI installs Chromium and sets it, so there the page is always opened in a browser."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    why = "headless Chromium is not installed (Debian: apt-get install chromium)"
    if found is None and os.environ.get("VAEREG_REQUIRE_CHROMIUM"):
        pytest.fail(f"VAEREG_REQUIRE_CHROMIUM is set, but {why}")
    if found is None:
        pytest.skip(why)
    return found


def chromium(browser: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # a browser, started three times
def test_the_page_renders_in_headless_chromium_and_its_columns_sort(browser, evaluated):
    vaereg_cli("report", "--out", "rep", cwd=evaluated)
    index = evaluated / "rep" / "index.html"
    shot = evaluated / "page.png"
    chromium(browser, "--window-size=1200,1600", f"--screenshot={shot}", index.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"))
    drawn = (pixels < 200).mean()  # text, table rules, plots and grids on a white page
    assert 0.02 < drawn < 0.9 and len(np.unique(pixels)) > 50, drawn

    # click the NLL heading twice in the browser: worst NLL first
    clicked = evaluated / "rep" / "clicked.html"
    clicks = "<script>const th = document.querySelectorAll('th')[5]; th.click(); th.click();</script></body>"
    clicked.write_text(index.read_text().replace("</body>", clicks))
    dom = chromium(browser, "--dump-dom", clicked.as_uri()).stdout
    shown = Page()
    shown.feed(dom)
    nlls = [float(r[5]) for r in shown.rows]
    assert len(nlls) == 2 and nlls == sorted(nlls, reverse=True) and nlls != [float(r[5]) for r in page_of(index).rows]
