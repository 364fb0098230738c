"""Fuzzing the command line: at least 1,000 malformed invocations generated from its own option
table (``tests/fuzz_cli.py``), each answered without a traceback or a hang, every refusal one
``Error:`` line with exit code 2, and no row written for a refused run."""

import json
import subprocess
import sys
from pathlib import Path

from vaereg_harness.api import RunConfig, create_model, train_model
from vaereg_harness.run.config import TrainConfig

ROOT = Path(__file__).parent.parent


def test_a_thousand_malformed_invocations_give_no_traceback_and_no_hang(digits, tmp_path):
    config = RunConfig(train=TrainConfig(epochs=1, device="cpu"))
    model = create_model("gaussian-mlp", digits, {"encoder": {"width": 4}, "decoder": {"width": 4}}, config)
    _, ckpt = train_model(model, digits, config, tmp_path / "runs", progress=False)
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz_cli", "--workdir", str(tmp_path), "--checkpoint",
                           str(ckpt), "--cases", "1000"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["cases"] >= 1000
    assert report["bad"] == [], json.dumps(report["bad"][:10], indent=1)
    assert report["exit_1"] == [], json.dumps(report["exit_1"][:10], indent=1)  # a refusal is a usage error: exit 2
