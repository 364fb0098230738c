"""Twenty SIGKILLs at random moments (imports, training, checkpoint writes, evaluation, grid and
row writes), each followed by ``--resume``: the run ends as an uninterrupted one would, with
one row and no temporary file left."""

import random
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import vaereg_cli
from vaereg_harness.store.results import read_results

# twenty kills timed against a run of about 4 s: long, and alone so the timing holds
pytestmark = [pytest.mark.slow, pytest.mark.serial]

ARGS = ["eval", "--combo", "gaussian-mlp", "--epochs", "8", "--iw-samples", "20", "--no-fid", "--quiet",
        "--checkpoint-every", "0", "--set", "encoder.width=16", "--set", "decoder.width=16"]
METRICS = ("nelbo_nats", "nll_nats", "nll_bpd", "kl_per_level", "active_units", "epochs", "config_hash")


def test_twenty_random_kills_each_resumed_end_as_an_uninterrupted_run(tmp_path):
    vaereg_cli(*ARGS, "--out", "straight", "--results", "straight-rows", cwd=tmp_path)
    killed = [*ARGS, "--resume", "--out", "killed", "--results", "killed-rows"]
    rng = random.Random(0)
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-m", "vaereg_harness.cli", *killed], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 6.0))  # a whole run takes about 4 s here, imports included
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    vaereg_cli(*killed, cwd=tmp_path)
    (straight,) = read_results(tmp_path / "straight-rows").to_pylist()
    rows = read_results(tmp_path / "killed-rows").to_pylist()
    assert len(rows) == 1  # no duplicate, whenever the kills came
    assert {k: rows[0][k] for k in METRICS} == {k: straight[k] for k in METRICS}
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
