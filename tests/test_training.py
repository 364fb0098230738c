"""Checkpoints: exact resume, surviving a kill, stopping on NaN with the last good checkpoint."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from vaereg.model import Batch
from vaereg_harness import checkpoint
from vaereg_harness import train as train_module
from vaereg_harness.api import RunConfig, create_model, run_dir, train_model
from vaereg_harness.train import TrainConfig, TrainingDiverged


def config(epochs: int) -> RunConfig:
    return RunConfig(train=TrainConfig(epochs=epochs, batch_size=128, seed=3, device="cpu"))


def trained(digits, out, epochs, resume=False):
    model = create_model("gaussian", digits, {"encoder": {"width": 16}, "decoder": {"width": 16}}, config(epochs))
    reports, path = train_model(model, digits, config(epochs), out, resume=resume, progress=False)
    return model, reports, path


def test_resumed_training_equals_uninterrupted_training(digits, tmp_path):
    straight, _, _ = trained(digits, tmp_path / "a", epochs=3)
    trained(digits, tmp_path / "b", epochs=1)
    resumed, reports, path = trained(digits, tmp_path / "b", epochs=3, resume=True)
    assert checkpoint.load(path)["epoch"] == 3
    assert reports[0].images == 3 * digits.train.shape[0]  # earlier epochs are counted, not redone
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b) if torch.is_tensor(a) else a == b, name


def test_checkpoint_rebuilds_model_without_pickled_code(digits, tmp_path):
    model, _, path = trained(digits, tmp_path, epochs=1)
    payload = checkpoint.load(path)
    rebuilt = checkpoint.rebuild(payload)
    batch = Batch(digits.to_model(digits.test[:4], train=False))
    torch.manual_seed(0)
    a = model.eval()(batch).log_weights()
    torch.manual_seed(0)
    assert torch.allclose(a, rebuilt.eval()(batch).log_weights())


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(digits, tmp_path, monkeypatch):
    real = train_module.training_loss
    calls = {"n": 0}
    steps_per_epoch = -(-digits.train.shape[0] // 128)

    def poisoned(terms, objective, progress, latent):
        calls["n"] += 1
        loss, stats = real(terms, objective, progress, latent)
        if calls["n"] > steps_per_epoch:  # the second epoch diverges
            loss = loss * float("nan")
            stats["loss"] = loss.detach()
        return loss, stats

    monkeypatch.setattr(train_module, "training_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss became nan in the autoencoder stage, epoch 2; the last good"):
        trained(digits, tmp_path, epochs=4)
    payload = checkpoint.load(run_dir(tmp_path, digits, "gaussian", 3) / "checkpoint.pt")
    assert payload["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in payload["model"].values() if torch.is_tensor(v))


def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    args = [sys.executable, "-m", "vaereg_harness.cli", "train", "--combo", "gaussian", "--epochs", "400",
            "--quiet", "--device", "cpu"]
    proc = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE)
    path = tmp_path / "vaereg-runs" / "digits-gaussian-seed0" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (path.exists() and checkpoint.load(path)["epoch"] >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = checkpoint.load(path)["epoch"]  # intact after the kill: written atomically
    assert 2 <= done < 400
    proc = subprocess.run([*args[:-4], str(done + 2), "--quiet", "--device", "cpu", "--resume"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert checkpoint.load(path)["epoch"] == done + 2


def test_checkpoints_refuse_to_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": checkpoint.FORMAT, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="not a readable vaereg checkpoint"):
        checkpoint.load(tmp_path / "evil.pt")
