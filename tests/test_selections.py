"""The selections the README's test command and CI run: every test is in the default or in exactly
one of ``slow``, ``distributed``, ``slurm`` and ``gpu``; the markers pyproject.toml declares are
exactly those the suite uses; a test that starts torchrun is never in the default selection.

The suite is collected in a subprocess (``-m ''``: every test, whatever the command line of this
run selected), with this module as a plugin that writes each test's marks to a JSON file."""

import inspect
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ALONE, SELECTIONS

ROOT = Path(__file__).parents[1]
#: marks that pytest and its plugins register themselves
BUILT_IN = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings"}
#: what starts a multi-process job
LAUNCHERS = ("torch.distributed.run", "torchrun(", "two_nodes(")


def pytest_collection_finish(session: pytest.Session) -> None:
    """As a plugin (``-p tests.test_selections``): every collected test's marks, and whether it
    starts a multi-process job, to ``$VAEREG_MARKS_JSON``."""
    out = os.environ.get("VAEREG_MARKS_JSON")
    if not out:
        return
    tests = {}
    for item in session.items:
        function = getattr(item, "function", None)
        source = inspect.getsource(function) if function is not None else ""
        tests[item.nodeid] = {"marks": sorted({m.name for m in item.iter_markers()}),
                              "launches": any(launcher in source for launcher in LAUNCHERS)}
    Path(out).write_text(json.dumps(tests))


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("selections") / "marks.json"
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "", "-n", "0",
                           "-p", "no:cacheprovider", "-p", "tests.test_selections"], cwd=ROOT,
                          env=dict(os.environ, VAEREG_MARKS_JSON=str(out)), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads(out.read_text())


def declared() -> set[str]:
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return {line.split(":", 1)[0].strip() for line in ini["markers"]}


def test_every_test_is_in_the_default_or_in_one_selection(suite):
    assert len(suite) > 1000  # the whole suite, the matrix included
    several = {nodeid: sorted(set(t["marks"]) & set(SELECTIONS)) for nodeid, t in suite.items()}
    assert not {n: m for n, m in several.items() if len(m) > 1}


def test_pyproject_declares_exactly_the_marks_the_suite_uses(suite):
    used = {mark for t in suite.values() for mark in t["marks"]} - BUILT_IN
    assert declared() == used
    assert set(SELECTIONS) | {ALONE} == declared()


def test_a_test_that_starts_torchrun_is_never_in_the_default_selection(suite):
    launching = {n for n, t in suite.items() if t["launches"]}
    assert "tests/test_distributed.py::test_two_nodes_on_localhost_train_as_one_job" in launching
    assert not {n for n in launching if not set(suite[n]["marks"]) & {"distributed", "slurm"}}
