"""Fuzzing the command line (``tests/fuzz_cli.py``): cases derived from its option table, the
registered ``Config`` dataclasses and the experiment-file keys, each answered without a
traceback or a hang, every refusal one ``Error:`` line with exit code 2 that wrote nothing.
The whole derived set (over 2,000 cases) runs in the slow selection; a 150-case sample of it,
drawn with another seed, in the default one."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vaereg_harness.api import RunConfig, create_model, train_model
from vaereg_harness.run.config import TrainConfig

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def checkpoint(digits, tmp_path_factory) -> Path:
    """A width-4 MLP trained one epoch: what ``vaereg sample`` cases read."""
    config = RunConfig(train=TrainConfig(epochs=1, device="cpu"))
    model = create_model("gaussian-mlp", digits, {"encoder": {"width": 4}, "decoder": {"width": 4}}, config)
    return train_model(model, digits, config, tmp_path_factory.mktemp("ckpt"), progress=False)[1]


def fuzz(workdir: Path, checkpoint: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz_cli", "--workdir", str(workdir), "--checkpoint",
                           str(checkpoint), *args], cwd=ROOT, capture_output=True, text=True, timeout=2700)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{report['cases']} cases in {report['seconds']} s, exit codes {report['exit_codes']}, "
          f"{len(report['diverged'])} valid run(s) diverged")
    assert report["bad"] == [], json.dumps(report["bad"][:10], indent=1, ensure_ascii=False)
    assert report["exit_1"] == [], json.dumps(report["exit_1"][:10], indent=1)  # a refusal is a usage error: exit 2
    return report


def test_a_sample_of_the_fuzz_gives_no_traceback_and_no_hang(checkpoint, tmp_path):
    report = fuzz(tmp_path, checkpoint, "--sample", "150", "--seed", "7")
    assert report["cases"] == 150 and report["exit_codes"].get("2", 0) > 100  # mostly refusals, as generated


@pytest.mark.slow
def test_two_thousand_derived_cases_give_no_traceback_and_no_hang(checkpoint, tmp_path):
    report = fuzz(tmp_path, checkpoint, "--cases", "2000")
    assert report["cases"] >= 2000
    assert set(report["exit_codes"]) <= {"0", "1", "2"} and report["exit_codes"].get("1", 0) == len(report["diverged"])
