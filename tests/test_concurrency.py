"""Two identical ``vaereg eval`` runs started together: the run folder's lock makes the second
wait, look again, and show the first one's row; one training, one row, a metrics log whose every
line parses. The lock is the kernel's, so a killed holder releases it."""

import json
import select
import signal
import subprocess
import sys
import time

import pytest
from filelock import FileLock, Timeout

from tests.conftest import vaereg_cli
from vaereg_harness.store.locks import RUN_LOCK
from vaereg_harness.store.results import read_results

# races of processes and a lock timed in seconds: alone, beside no other test
pytestmark = pytest.mark.serial

EPOCHS = 3
ARGS = ["eval", "--combo", "gaussian-mlp", "--epochs", str(EPOCHS), "--iw-samples", "4", "--no-fid", "--threads",
        "1", "--set", "encoder.width=16", "--set", "decoder.width=16"]


def start(cwd, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vaereg_harness.cli", *ARGS, *extra], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 300) -> str:
    """The first line of ``proc``'s stderr holding ``text``, however long a loaded machine takes
    to get there (at most ``timeout`` seconds)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        line = proc.stderr.readline() if ready else ""
        if text in line:
            return line
        assert proc.poll() is None or line, f"exited {proc.returncode} before saying {text!r}"
    raise AssertionError(f"no {text!r} on stderr after {timeout} s")


def race(tmp_path) -> None:
    """Two identical runs at once: exactly one trains and writes; the other shows its row."""
    procs = [start(tmp_path), start(tmp_path)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert "Traceback" not in err
    rows = read_results(tmp_path / "vaereg-results").to_pylist()
    assert len(rows) == 1, f"{len(rows)} rows"
    skipped = [out for out, err in outputs if "already recorded" in err]
    assert len(skipped) == 1, [err for _, err in outputs]
    assert "gaussian-mlp" in skipped[0]  # the recorded row is shown
    assert "0 row(s) appended" in skipped[0] and "1 already recorded" in skipped[0]
    [log] = list((tmp_path / "vaereg-runs").glob("*/metrics.jsonl"))
    records = [json.loads(line) for line in log.read_text().splitlines()]  # every line parses
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))  # one training, not two interleaved


def test_two_identical_runs_started_together_train_once_and_write_one_row(tmp_path):
    race(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(10))
def test_two_identical_runs_race_ten_times(tmp_path, attempt):
    race(tmp_path)


def test_a_killed_holder_releases_the_lock_and_the_next_run_trains(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom filelock import FileLock\n"
                               "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True)\n"
                               "time.sleep(600)", str(tmp_path / RUN_LOCK)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(Timeout):
        FileLock(tmp_path / RUN_LOCK).acquire(timeout=0.2)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    began = time.monotonic()
    lock = FileLock(tmp_path / RUN_LOCK)
    lock.acquire(timeout=5)  # the kernel released it with the process
    lock.release()
    assert time.monotonic() - began < 5


def test_a_run_waits_for_the_process_holding_its_folder(tmp_path):
    folder = next(line.split(": ", 1)[1] for line in vaereg_cli(*ARGS, "--print-config", cwd=tmp_path)
                  .stdout.splitlines() if line.startswith("#   gaussian-mlp"))
    (tmp_path / folder).mkdir(parents=True)
    lock = FileLock(tmp_path / folder / RUN_LOCK)
    lock.acquire()
    proc = start(tmp_path)
    try:
        note = wait_for_line(proc, "another vaereg process is running gaussian-mlp seed 0")
        assert f"{folder}/{RUN_LOCK}" in note  # the note names the lock it waits on
        time.sleep(1)
        assert proc.poll() is None
        assert not (tmp_path / folder / "metrics.jsonl").exists()  # nothing trained while the lock is held
    finally:
        lock.release()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert len(read_results(tmp_path / "vaereg-results").to_pylist()) == 1


TRAIN_CLASSIFIER = """
import sys
from pathlib import Path
from vaereg_harness.api import load_data
from vaereg_harness.metrics import classifier

real = classifier.train_classifier

def counted(*args, **kwargs):
    with open(sys.argv[2], "a") as f:
        f.write("trained\\n")
    return real(*args, **kwargs)

classifier.train_classifier = counted
path = classifier.cached_classifier(load_data("digits"), Path(sys.argv[1]))
classifier.load_classifier(path)  # a whole file, never half of one
print(path)
"""


@pytest.mark.slow  # two processes train the classifier
def test_two_runs_needing_the_fid_classifier_train_it_once(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_CLASSIFIER)
    count = tmp_path / "count.txt"
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), str(count)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    assert count.read_text().splitlines() == ["trained"]
    assert outputs[0][0] == outputs[1][0]
