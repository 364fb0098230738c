"""What the command line prints for a usage error and for a run already recorded."""

import re

import pytest
from click.testing import CliRunner

from vaereg_harness.cli.app import main


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the tiny runs of this module."""


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="vaereg")


def usage_error(result, command: str) -> str:
    """The one ``Error:`` message of a usage error, after checking that everything around it is
    what click prints for its own errors: the subcommand's usage line, its help hint, exit 2."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[:3] == [f"Usage: vaereg {command} [OPTIONS]", f"Try 'vaereg {command} --help' for help.", ""], \
        result.stderr
    assert len(lines) == 4 and lines[3].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[3]


def test_vaereg_own_usage_errors_print_the_subcommand_usage_as_clicks_own_errors_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweep.toml").write_text('combo = "gaussian"\nbogus = 1\n')
    ours = {  # refused by vaereg's code, not by click's parser
        "eval": (invoke("eval", "--combo", "gaussian", "--set", "foo.x=1", "--no-fid"),
                 "Error: --set group 'foo' is unknown; groups: encoder, decoder, prior, likelihood, objective, "
                 "dataset, metric"),
        "sweep": (invoke("sweep", "--config", "sweep.toml"), "Error: --config sweep.toml: unknown key 'bogus'; "),
        "results": (invoke("results", "--sort", "nosuch"), "Error: --sort 'nosuch' is not a sortable column; "),
    }
    for command, (result, message) in ours.items():
        assert usage_error(result, command).startswith(message), result.stderr
    assert not (tmp_path / "vaereg-runs").exists() and not (tmp_path / "vaereg-results").exists()  # nothing ran

    clicks = {  # click's own errors, unchanged
        "eval": (invoke("eval", "--combo", "gaussian", "--epochs", "x"),
                 "Error: Invalid value for '--epochs'"),
        "sweep": (invoke("sweep", "--bogus"), "Error: No such option '--bogus'"),
        "results": (invoke("results", "--sort", "nll_nats", "extra"), "Error: Got unexpected extra argument"),
    }
    for command, (result, message) in clicks.items():
        assert usage_error(result, command).startswith(message), result.stderr


def test_the_group_keeps_its_own_usage_for_its_own_errors():
    result = invoke("nosuch")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:2] == ["Usage: vaereg [OPTIONS] COMMAND [ARGS]...",
                                               "Try 'vaereg --help' for help."], result.stderr


def test_a_run_already_recorded_shows_its_row_and_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = ["eval", "--combo", "gaussian", "--epochs", "1", "--iw-samples", "2", "--no-fid", "--batch-size", "64",
           "--quiet", "--threads", "1"]
    first = invoke(*run)
    (folder,) = (tmp_path / "vaereg-runs").iterdir()
    trained = (folder / "checkpoint.pt").stat().st_mtime_ns
    again = invoke(*run)
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    header = first.stdout.splitlines()[0].split()
    nll = first.stdout.splitlines()[1].split()[header.index("NLL")]
    assert re.fullmatch(r"\d+\.\d\d", nll), first.stdout  # the first run's NLL as its table prints it
    assert "already recorded" not in first.output and "1 row(s) appended" in first.stdout

    assert f"already recorded: gaussian seed 0 (run folder vaereg-runs/{folder.name})" in again.stderr
    assert again.stdout.splitlines()[:2] == first.stdout.splitlines()[:2]  # the same header and row, same NLL
    assert again.stdout.splitlines()[1].split()[header.index("NLL")] == nll
    assert "0 row(s) appended to vaereg-results/; 1 already recorded" in again.stdout
    assert (folder / "checkpoint.pt").stat().st_mtime_ns == trained  # not trained again
