"""Training logs: the metrics log every run writes, a third-party tracker through its own entry
point, and the built-in TensorBoard tracker read back with TensorBoard's event reader."""

import json

import torch

from tests.conftest import vaereg_cli
from tests.test_registry import env_with, install_plugin
from vaereg_harness.run import checkpoint

RECORDER = '''
"""A third-party tracker: appends every record it is given to a file in the run folder."""
import json
from vaereg import hookimpl
from vaereg_harness.logs import Logger

VAEREG_PLUGIN_API = 3


class Recorder(Logger):
    def __init__(self, folder, config):
        self.folder = folder

    def log(self, record, samples):
        with open(self.folder / "recorded.jsonl", "a") as f:
            f.write(json.dumps({**record, "sample_shape": list(samples().shape)}) + "\\n")


@hookimpl
def register_loggers(register):
    register("recorder", Recorder)
'''


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_folder(tmp_path, out, prefix):
    (folder,) = (tmp_path / out).glob(f"{prefix}-*")
    return folder


def test_every_run_writes_one_metrics_record_per_epoch(tmp_path):
    vaereg_cli("train", "--combo", "vq+pixelcnn", "--epochs", "2", "--prior-epochs", "1", "--quiet",
               "--set", "prior.width=8", cwd=tmp_path)
    run = run_folder(tmp_path, "vaereg-runs", "digits-vq_pixelcnn-seed0")
    log = records(run / "metrics.jsonl")
    assert [(r["stage"], r["epoch"]) for r in log] == [("autoencoder", 1), ("autoencoder", 2), ("prior", 1)]
    first = log[0]
    assert {"step", "loss", "nelbo", "kl", "perplexity", "usage", "lr", "images_per_s"} <= first.keys()
    assert first["step"] == 23 and first["lr"] == 1e-3 and 1 <= first["perplexity"] <= 32
    vaereg_cli("train", "--combo", "vq+pixelcnn", "--epochs", "2", "--prior-epochs", "1", "--quiet",
               "--set", "prior.width=8", "--resume", cwd=tmp_path)
    assert records(run / "metrics.jsonl") == log  # a finished run resumed trains and logs nothing more


def test_a_non_gradient_fit_logs_each_iteration(tmp_path):
    vaereg_cli("train", "--combo", "gaussian-mlp+prior=gmm", "--epochs", "1", "--quiet",
               "--set", "prior.components=2", "--set", "prior.restarts=1", cwd=tmp_path)
    log = records(run_folder(tmp_path, "vaereg-runs", "digits-gaussian-mlp_prior=gmm-seed0") / "metrics.jsonl")
    fit = [r for r in log if r["stage"] == "prior"]
    assert fit and [r["iteration"] for r in fit] == list(range(1, len(fit) + 1))
    assert all(b["log_likelihood"] >= a["log_likelihood"] - 1e-9 for a, b in zip(fit, fit[1:], strict=False))


def test_a_third_party_tracker_receives_every_epoch(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "vaereg-recorder", "vaereg_recorder", RECORDER)
    env = env_with(site)
    assert "logger     recorder" in vaereg_cli("plugins", cwd=tmp_path, env=env).stdout
    vaereg_cli("train", "--combo", "gaussian-mlp", "--epochs", "3", "--quiet", "--log", "recorder", cwd=tmp_path,
               env=env)
    got = records(run_folder(tmp_path, "vaereg-runs", "digits-gaussian-mlp-seed0") / "recorded.jsonl")
    assert [r["epoch"] for r in got] == [1, 2, 3] and all(r["sample_shape"] == [16, 1, 8, 8] for r in got)
    proc = vaereg_cli("train", "--combo", "gaussian-mlp", "--log", "nope", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "unknown logger 'nope' for --log; known loggers: optuna, tensorboard" in proc.stderr


def test_tensorboard_holds_the_loss_of_every_epoch_and_logging_changes_no_weight(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    vaereg_cli("train", "--combo", "gaussian-mlp", "--epochs", "3", "--quiet", "--log", "tensorboard",
               "--out", "with", cwd=tmp_path)
    vaereg_cli("train", "--combo", "gaussian-mlp", "--epochs", "3", "--quiet", "--out", "without", cwd=tmp_path)
    run = run_folder(tmp_path, "with", "digits-gaussian-mlp-seed0")
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    losses = events.Scalars("autoencoder/loss")
    logged = records(run / "metrics.jsonl")
    assert [e.step for e in losses] == [23, 46, 69]
    assert [round(e.value, 3) for e in losses] == [round(r["loss"], 3) for r in logged]
    assert events.Images("autoencoder/samples")
    a = checkpoint.load(run / "checkpoint.pt")["model"]
    b = checkpoint.load(run_folder(tmp_path, "without", "digits-gaussian-mlp-seed0") / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a if torch.is_tensor(a[k]))
