"""Checkpoints: exact resume, surviving a kill, stopping on NaN with the last good checkpoint."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from vaereg.model import Batch
from vaereg_harness.api import RunConfig, create_model, run_dir, train_model
from vaereg_harness.run import checkpoint
from vaereg_harness.run import trainer as train_module
from vaereg_harness.run.config import TrainConfig
from vaereg_harness.run.trainer import TrainingDiverged
from vaereg_objectives.elbo import ELBO


def config(epochs: int) -> RunConfig:
    return RunConfig(train=TrainConfig(epochs=epochs, batch_size=128, seed=3, device="cpu", checkpoint_every=0,
                                       threads=1))


def trained(digits, out, epochs, resume=False):
    model = create_model("gaussian", digits, {"encoder": {"width": 16}, "decoder": {"width": 16}}, config(epochs))
    reports, path = train_model(model, digits, config(epochs), out, resume=resume, progress=False)
    return model, reports, path


class Interrupted(Exception):
    pass


def test_resumed_training_equals_uninterrupted_training(digits, tmp_path, monkeypatch):
    straight, _, _ = trained(digits, tmp_path / "a", epochs=3)
    real_save = train_module.Trainer.save

    def save_then_stop(self, stage, epoch, optimizer):
        real_save(self, stage, epoch, optimizer)
        raise Interrupted  # as if killed right after the first epoch's checkpoint

    monkeypatch.setattr(train_module.Trainer, "save", save_then_stop)
    with pytest.raises(Interrupted):
        trained(digits, tmp_path / "b", epochs=3)
    monkeypatch.undo()
    resumed, reports, path = trained(digits, tmp_path / "b", epochs=3, resume=True)
    assert checkpoint.load(path)["epoch"] == 3
    assert reports[0].images == 3 * digits.train.shape[0]  # earlier epochs are counted, not redone
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b) if torch.is_tensor(a) else a == b, name


def test_the_run_folder_is_keyed_by_the_training_settings(digits, tmp_path):
    def folder(**changes):
        run = RunConfig(train=TrainConfig(**{"epochs": 3, "seed": 3, "device": "cpu", **changes}))
        options = {"encoder": {"width": 16}}
        return run_dir(tmp_path, digits, create_model("gaussian", digits, options, run).combo, run)

    assert folder() == folder() and folder().name.startswith("digits-gaussian-seed3-")
    assert len({folder(), folder(lr=2e-3), folder(epochs=4), folder(batch_size=32), folder(seed=4)}) == 5
    run = RunConfig(train=TrainConfig(epochs=3, seed=3, device="cpu"), iw_samples=7, fid_samples=50)
    combo = create_model("gaussian", digits, {"encoder": {"width": 16}}, run).combo
    assert run_dir(tmp_path, digits, combo, run) == folder()  # evaluation options train nothing new


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
    real = ELBO.loss
    calls = {"n": 0}
    steps_per_epoch = -(-digits.train.shape[0] // 128)

    def poisoned(self, terms, progress):
        calls["n"] += torch.is_grad_enabled()  # training steps only, not the probe before training
        loss, stats = real(self, terms, progress)
        if calls["n"] > steps_per_epoch:  # the second epoch diverges
            loss = loss * float("nan")
            stats["loss"] = loss.detach()
        return loss, stats

    monkeypatch.setattr(ELBO, "loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss became nan in the autoencoder stage, epoch 2; the last good"):
        trained(digits, tmp_path, epochs=4)
    payload = checkpoint.load(next(tmp_path.glob("*/checkpoint.pt")))
    assert payload["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in payload["model"].values() if torch.is_tensor(v))


@pytest.mark.slow  # 40 epochs, killed and resumed
def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    args = [sys.executable, "-m", "vaereg_harness.cli", "train", "--combo", "gaussian-mlp", "--epochs", "40",
            "--quiet", "--device", "cpu", "--checkpoint-every", "0"]
    proc = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE)

    def written():
        return next((tmp_path / "vaereg-runs").glob("digits-gaussian-mlp-seed0-*/checkpoint.pt"), None)

    deadline = time.time() + 120
    while time.time() < deadline and not ((path := written()) and checkpoint.load(path)["epoch"] >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = checkpoint.load(path)["epoch"]  # intact after the kill: written atomically
    assert 2 <= done < 40
    proc = subprocess.run([*args, "--resume"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert checkpoint.load(path)["epoch"] == 40 and "no checkpoint" not in proc.stderr
    epochs = [json.loads(line)["epoch"] for line in (path.parent / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(epochs)) == list(range(1, 41)) and epochs[-1] == 40  # the resumed run appended


def test_checkpoints_refuse_to_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": checkpoint.FORMAT, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="not a readable vaereg checkpoint"):
        checkpoint.load(tmp_path / "evil.pt")
