"""The thread policy: a fixed count, and auto following the load other processes put on the cores."""

import pytest
import torch

from tests.conftest import vaereg_cli
from vaereg_harness.launch import threads
from vaereg_harness.store.results import read_results

# a CPU hog beside bitwise comparisons: alone, so the only load is the hog
pytestmark = pytest.mark.serial


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def looks(monkeypatch, samples):
    """Feed (wall, own CPU, machine-wide busy CPU) seconds to the policy, one per look."""
    feed = iter(samples)
    monkeypatch.setattr(threads.Threads, "_sample", staticmethod(lambda: next(feed)))
    monkeypatch.setattr(threads, "FIRST_LOOK_S", 0.0)
    monkeypatch.setattr(threads, "LOOK_EVERY_S", 0.0)


def test_auto_gives_up_the_cores_other_processes_keep_busy_and_takes_them_back(monkeypatch, two_cores):
    # a look over 1 s: this process used 1 CPU second; the machine 2, so another process kept a core busy
    looks(monkeypatch, [(0.0, 0.0, 0.0), (1.0, 1.0, 2.0), (2.0, 1.9, 3.9), (3.0, 3.8, 5.9)])
    policy = threads.Threads(None)
    assert policy.count == 2 and torch.get_num_threads() == 2  # its share to start with
    policy.tick()
    assert policy.count == 1 and torch.get_num_threads() == 1
    policy.tick()  # 0.9 s of 1.9 busy was ours: the other process still holds a core
    assert policy.count == 1
    policy.tick()  # 1.9 of 2.0 busy seconds were ours: the other process is gone
    assert policy.count == 2 and torch.get_num_threads() == 2
    assert policy.describe() == "auto:1-2"


def test_torchrun_ranks_split_the_cores_and_a_fixed_count_never_moves(monkeypatch, two_cores):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.Threads(None).count == 1
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    looks(monkeypatch, [(1.0, 0.0, 2.0)])
    fixed = threads.Threads(2)
    fixed.tick()
    assert fixed.count == 2 and torch.get_num_threads() == 2 and fixed.describe() == "2"


def test_the_row_records_the_setting_and_a_bad_count_is_a_usage_error(tmp_path):
    vaereg_cli("eval", "--combo", "gaussian-mlp", "--epochs", "1", "--iw-samples", "2", "--no-fid", "--quiet",
               "--threads", "1", cwd=tmp_path)
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert row["threads"] == "1"
    for bad, message in (("0", "threads"), ("many", "neither a whole number of threads nor 'auto'")):
        proc = vaereg_cli("train", "--combo", "gaussian", "--threads", bad, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def trained_weights(digits, out, count: int) -> dict[str, torch.Tensor]:
    from vaereg_harness.api import RunConfig, create_model, train_model
    from vaereg_harness.run.config import TrainConfig

    config = RunConfig(train=TrainConfig(epochs=2, batch_size=64, seed=7, device="cpu", threads=count))
    model = create_model("gaussian", digits, {"encoder": {"width": 16}, "decoder": {"width": 16}}, config)
    train_model(model, digits, config, out, progress=False)
    return {k: v.clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}


def test_a_fixed_count_is_bitwise_reproducible_under_load_and_counts_differ_only_in_the_last_bits(
        digits, tmp_path, two_cores):
    """What the README's Guarantees promise: one count, the same bits even beside a busy
    process; 1 and 2 threads, the same weights to float32's last bits."""
    import subprocess
    import sys

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        first = trained_weights(digits, tmp_path / "a", 1)
        again = trained_weights(digits, tmp_path / "b", 1)
        two = trained_weights(digits, tmp_path / "c", 2)
    finally:
        hog.kill()
        hog.wait()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert max((first[k].float() - two[k].float()).abs().max().item() for k in first) < 1e-5
