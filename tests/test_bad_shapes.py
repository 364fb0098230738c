"""Option values that once passed validation and crashed later (issue 25): integers of hundreds
of digits (``math.isfinite`` overflowed on them), floats beyond the double range, and even
PixelCNN kernels (accepted, then a crash after the whole autoencoder had trained). Each must be
one ``Error:`` line naming the option, exit 2, before anything is trained or recorded."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from vaereg_harness.cli import main

HUGE = "1" + "0" * 400  # an integer no float holds: float(HUGE) raises OverflowError


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread: the pre-fix code trains a model before crashing."""


CASES = [
    # (combo, --set, what the one line must contain)
    ("gaussian", f"encoder.latent_dim={HUGE}", ["latent_dim=", "out of range", "<= 4096"]),
    ("gaussian", f"encoder.latent_dim=-{HUGE}", ["latent_dim=", "out of range", ">= 1"]),
    ("gaussian", f"objective.beta={HUGE}", ["beta=", "out of range", "<= 1e+06"]),
    ("gaussian", "objective.beta=1e400", ["beta=Infinity", "not finite", "<= 1e+06"]),
    ("gaussian", "objective.beta=-1e400", ["beta=-Infinity", "not finite", ">= 0"]),
    ("hvae", f"objective.step_size={HUGE}", ["step_size=", "too large", "a number > 0"]),  # no upper bound
    ("vq+pixelcnn", "prior.kernel=8", ["prior 'pixelcnn'", "kernel=8 is even", "7 or 9"]),
    ("vq+pixelcnn", "prior.kernel=2", ["prior 'pixelcnn'", "kernel=2 is even", "such as 3"]),
    ("vq+pixelcnn", "prior.kernel=4", ["prior 'pixelcnn'", "kernel=4 is even", "3 or 5"]),
    ("gaussian+likelihood=pixelcnn", "likelihood.kernel=4", ["likelihood 'pixelcnn'", "kernel=4 is even"]),
]


@pytest.mark.parametrize(("combo", "assignment", "expected"), CASES, ids=[f"{c}:{a[:30]}" for c, a, _ in CASES])
def test_refused_in_one_line_before_training(tmp_path, monkeypatch, combo, assignment, expected):
    monkeypatch.chdir(tmp_path)
    out, results = tmp_path / "out", tmp_path / "results"
    result = CliRunner().invoke(main, ["eval", "--combo", combo, "--no-fid", "--epochs", "1", "--out", str(out),
                                       "--results", str(results), "--set", assignment])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, OverflowError | RuntimeError)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert all(part in errors[0] for part in expected), errors[0]
    assert len(errors[0]) < 400, "a huge value is shown shortened"
    written = [p for folder in (out, results) if folder.exists() for p in folder.rglob("*")]
    assert written == [], written


# Found by the fuzz (tests/fuzz_cli.py): a GMM prior with no covariance floor crashed in EM's Cholesky after the
# autoencoder had trained; a path holding NUL, or bytes that are not UTF-8, crashed in the path checks.
@pytest.mark.parametrize(("args", "expected"), [
    (["--combo", "ae", "--set", "prior.floor=0"], ["floor=0", "out of range", "> 0"]),
    (["--combo", "gaussian", "--out", "a\x00b"], ["--out", "NUL character"]),
    (["--combo", "gaussian", "--results", "\udcff"], ["'\\udcff'", "not valid UTF-8"]),
    (["--combo", "gaussian", "--data-root", "\udcff"], ["'\\udcff'", "not valid UTF-8"]),
    (["--combo", "btcvae", "--set", "objective.dataset_size=8"], ["dataset_size holds 8", "--batch-size is 64"]),
    (["--combo", "btcvae", "--dataset", "shapes", "--set", "dataset.positions=1", "--set", "dataset.scales=1",
      "--set", "dataset.orientations=16", "--batch-size", "64"], ["the training split holds 38", "estimator=mws"]),
], ids=["gmm-floor-0", "nul-in-path", "undecodable-results", "undecodable-data-root", "btcvae-n-below-batch",
        "btcvae-split-below-batch"])
def test_found_by_the_fuzz_refused_in_one_line(tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["eval", "--no-fid", "--epochs", "1", "--quiet", *args])
    assert result.exit_code == 2 and not isinstance(result.exception, ValueError | UnicodeError), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and all(part in errors[0] for part in expected), result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["report", "--results", "/etc/passwd", "--out", "rep"],
                                  ["report", "--out", "rep"],
                                  ["report", "--title", "\udcff", "--out", "rep"]],
                         ids=["foreign-store", "empty-store", "undecodable-title"])
def test_a_refused_report_makes_no_folder(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and not isinstance(result.exception, UnicodeError), result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error:")]) == 1, result.output
    assert list(tmp_path.iterdir()) == []
