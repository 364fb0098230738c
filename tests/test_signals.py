"""SIGINT and SIGTERM: one line saying what was saved and how to resume, exit 130 and 143. A
signal inside a training epoch is held until the step in flight ends, the epoch so far is
checkpointed, and ``--resume`` continues it to exactly the weights of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vaereg_harness.api import RunConfig, create_model, train_model
from vaereg_harness.launch import signals
from vaereg_harness.run import checkpoint
from vaereg_harness.run.config import TrainConfig
from vaereg_harness.store.results import read_results

STOP_AFTER = 5  # steps into the second epoch


def config() -> RunConfig:
    return RunConfig(train=TrainConfig(epochs=3, batch_size=64, seed=4, device="cpu", checkpoint_every=1e6,
                                       threads=1))


def trained(digits, out: Path, resume: bool = False):
    model = create_model("gaussian", digits, {"encoder": {"width": 16}, "decoder": {"width": 16}}, config())
    train_model(model, digits, config(), out, resume=resume, progress=False)
    return model


def test_a_signal_inside_an_epoch_checkpoints_it_and_resume_ends_bit_for_bit_as_uninterrupted(digits, tmp_path,
                                                                                              monkeypatch):
    straight = trained(digits, tmp_path / "a")
    steps = iter(range(10_000))
    batches = -(-digits.train.shape[0] // 64)
    held = signals.pending

    def signal_at_a_step():  # a SIGTERM that arrived during step STOP_AFTER of epoch 2 (an epoch asks after
        return signal.SIGTERM if next(steps) == batches + 1 + STOP_AFTER - 1 else held()  # each step and at its end

    monkeypatch.setattr(signals, "pending", signal_at_a_step)
    with pytest.raises(signals.Stopped) as stop:
        trained(digits, tmp_path / "b")
    monkeypatch.undo()
    assert stop.value.exit_code == 143
    [path] = (tmp_path / "b").rglob("checkpoint.pt")
    saved = checkpoint.load(path)
    assert saved["epoch"] == 1 and saved["within"]["step"] == STOP_AFTER
    assert str(path) in stop.value.message() and "epoch 2, step 5" in stop.value.message()
    assert "--resume" in stop.value.message()
    resumed = trained(digits, tmp_path / "b", resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b) if torch.is_tensor(a) else a == b, name
    log = (path.parent / "metrics.jsonl").read_text().splitlines()
    assert len(log) == 3  # epoch 2's record is written once, when it ends


def test_a_signal_after_an_epochs_last_step_saves_that_epoch_then_stops(digits, tmp_path, monkeypatch):
    """A signal held after the last step's check is asked for once more at the epoch's end: the
    finished epoch is checkpointed whole (no ``within``), then the run stops naming it."""
    batches = -(-digits.train.shape[0] // 64)
    calls = iter(range(10_000))
    held = signals.pending
    monkeypatch.setattr(signals, "pending", lambda: signal.SIGINT if next(calls) == batches else held())
    with pytest.raises(signals.Stopped) as stop:
        trained(digits, tmp_path)
    monkeypatch.undo()
    [path] = tmp_path.rglob("checkpoint.pt")
    saved = checkpoint.load(path)
    assert saved["epoch"] == 1 and "within" not in saved
    assert stop.value.exit_code == 130 and "to epoch 1 (" in stop.value.message()
    assert len((path.parent / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_signal_outside_training_names_the_last_checkpoint(tmp_path):
    before = signal.getsignal(signal.SIGINT)  # the test runner's (ignored when it runs in the background)
    with signals.handled():
        signals.saved("the checkpoint X holds autoencoder training to epoch 3 (10:00:00)")
        with pytest.raises(signals.Stopped) as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert stop.value.exit_code == 130
    assert stop.value.message() == ("stopped by SIGINT; the checkpoint X holds autoencoder training to epoch 3 "
                                    "(10:00:00); run the same command with --resume to continue from it")
    assert signal.getsignal(signal.SIGINT) is before  # restored


def vaereg_script() -> str:
    return str(Path(sys.executable).parent / "vaereg")


def wait_for(path_glob, cwd: Path, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not list(cwd.glob(path_glob)):
        assert time.monotonic() < end, f"no {path_glob} after {timeout} s"
        time.sleep(0.05)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_command_line_stops_in_one_line_and_resumes(tmp_path, signum, code):
    args = ["eval", "--combo", "gaussian-mlp", "--epochs", "40", "--batch-size", "16", "--iw-samples", "2",
            "--no-fid", "--quiet", "--threads", "1"]
    proc = subprocess.Popen([vaereg_script(), *args], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    wait_for("vaereg-runs/*/metrics.jsonl", tmp_path)
    time.sleep(0.5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.strip()]
    assert line.startswith(f"vaereg: stopped by {signal.Signals(signum).name}; the checkpoint ")
    assert line.endswith("run the same command with --resume to continue from it")
    [path] = tmp_path.rglob("checkpoint.pt")
    assert checkpoint.load(path)["epoch"] < 40
    assert not read_results(tmp_path / "vaereg-results").num_rows  # nothing recorded for a stopped run
    assert not list(tmp_path.rglob("*.tmp"))


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (Linux: SigCgt in /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(mask >> (signum - 1) & 1)


def test_a_signal_while_starting_ends_in_one_line(tmp_path):
    proc = subprocess.Popen([vaereg_script(), "plugins"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 60
    while not catches(proc.pid, signal.SIGTERM):  # the console script's handlers are in, torch not yet loaded
        assert time.monotonic() < end and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip() == "vaereg: stopped by SIGINT while starting; nothing was written"
