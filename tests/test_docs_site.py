"""The docs site builds with ``mkdocs build --strict`` (a broken link, anchor or API reference fails
it), and the README stays a one-to-three-screen page whose links all reach a file."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.slow  # mkdocs builds the whole site
def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs site needs the docs extra: pip install -e '.[docs]'")
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()
    # the generated references are not empty: the CLI's subcommands and the API's contracts are on their pages
    cli = (tmp_path / "site" / "cli" / "index.html").read_text(encoding="utf-8")
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert all(f"vaereg {command}" in cli for command in ("eval", "sweep", "search", "report", "check-plugin"))
    assert all(name in api for name in ("Encoder", "Decoder", "Prior", "Likelihood", "Objective"))


def test_the_readme_is_short_and_its_links_reach_files():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 250
    targets = [target for target in LINK.findall(text) if "://" not in target]
    assert targets, "the README links to the docs"
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, f"README links to missing files: {missing}"
