"""The examples of README.md and docs/ run as tests (conftest.py, tests/examples/): every skip says
why, their number stays small, and no code block escapes the runner under a language it ignores;
the shell runner fails a block that fails, checks documented refusals and cuts the budget."""

import os
import re
import stat

import pytest
from sybil.evaluators.skip import Skipper

from tests.examples.directives import has_reason, pages, skips
from tests.examples.pages import EXAMPLES, SHELLS
from tests.examples.shell import BUDGET, Shell, isolated

#: the skips: the two setup commands on two pages, the README's marked selections, 8 GPUs, multi-node, two Slurm blocks,
#: Debian's Fashion-MNIST files, and two regenerations of committed figures. Lower it when one goes.
MAX_SKIPS = 12
#: fenced blocks the runner does not run: outputs and diagrams
NOT_RUN = {"", "text"}
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(?P<language>[^\n`]*)\n(?:.*?\n)??[ \t]*\1[ \t]*$", re.M | re.S)
PAGES = pages()


def relative(path) -> str:
    return str(path.relative_to(PAGES[0].parent))


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_every_skip_says_why(page):
    found = skips(page.read_text(encoding="utf-8"))
    assert all(action in ("next", "start") for _, action, _ in found), found
    assert [line for line, _, reason in found if not has_reason(reason)] == []


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_the_runner_sees_every_skip(page):
    """Sybil parses as many skips as the count reads, so none is written in a form the count misses."""
    document = EXAMPLES.parse(page)
    parsed = [e for e in document.examples() if isinstance(e.region.evaluator, Skipper) and e.parsed[0] != "end"]
    assert len(parsed) == len(skips(page.read_text(encoding="utf-8")))


def test_the_skips_are_few():
    found = {relative(page): len(skips(page.read_text(encoding="utf-8"))) for page in PAGES}
    assert sum(found.values()) <= MAX_SKIPS, {page: n for page, n in found.items() if n}


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_every_code_block_runs_or_is_output(page):
    languages = {m["language"].strip() for m in FENCE.finditer(page.read_text(encoding="utf-8"))}
    assert languages <= {"python", "toml", *SHELLS, *NOT_RUN}, sorted(languages)


@pytest.fixture
def shell(tmp_path) -> Shell:
    """A page's shell whose ``vaereg`` is a stand-in printing its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vaereg"
    fake.write_text('#!/bin/sh\n'
                    'if [ "$2" = refuse ]; then echo usage >&2; echo "Error: no" >&2; exit 2; fi\n'
                    'echo "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    made = Shell.of(tmp_path, "small", tmp_path / "cache")
    made.env["PATH"] = os.pathsep.join([str(bin_dir), made.env["PATH"]])
    return made


def test_a_failing_block_fails_with_its_output(shell):
    message = shell.run("echo before\nexit 3\necho after")
    assert "exited 3" in message and "before" in message and "after" not in message.split("---")[-1]
    assert shell.run("false | cat") is not None  # pipefail
    assert shell.run("true") is None


def test_the_small_budget_is_appended_to_training_commands_only(shell):
    expected = " ".join(("eval", "--combo", "gaussian", *BUDGET["eval"]))
    small = shell.run(f"test \"$(vaereg eval --combo gaussian)\" = '{expected}'")
    assert small is None, small
    assert shell.run("test \"$(vaereg results --sort nll_nats)\" = 'results --sort nll_nats'") is None
    full = Shell(shell.folder, shell.env, "full")
    assert full.run("test \"$(vaereg eval --combo gaussian)\" = 'eval --combo gaussian'") is None


def test_a_documented_refusal_must_be_one_error_line_and_exit_2(shell):
    assert shell.run("vaereg eval refuse   # refused in one line\ntest \"$(vaereg results)\" = results") is None
    assert shell.run("vaereg eval accept   # refused in one line") is not None  # exits 0
    assert shell.run("sh -c 'exit 1'   # refused") is not None  # exits 1, not 2


def test_a_block_sees_no_network_interface_but_loopback(shell):
    if not isolated():
        pytest.skip("no unprivileged user namespaces here: only the proxy variables stand in the network's way")
    assert shell.run("test \"$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ')\" = lo") is None
