"""Training and evaluation under torchrun: 2 gloo processes on localhost, launched by torchrun
itself, against one process and against references computed here."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import vaereg_cli
from vaereg import collective
from vaereg.objectives import build_objective
from vaereg_harness.api import RunConfig, create_model
from vaereg_harness.launch import distributed
from vaereg_harness.run import checkpoint
from vaereg_harness.run.config import TrainConfig
from vaereg_harness.store.results import read_results

QUICK = ["--iw-samples", "8", "--no-fid", "--quiet", "--checkpoint-every", "0"]


REPO = Path(__file__).parent.parent


def torchrun(*args: str, cwd: Path, ranks: int = 2, check: bool = True, script: bool = False,
             module: str = "vaereg_harness.cli", **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    """``torchrun --standalone --nproc-per-node ranks`` running vaereg (as the README's
    ``--no-python vaereg`` with ``script``, else as ``module``); a Popen when ``popen`` is given."""
    entry = ["--no-python", str(Path(sys.executable).parent / "vaereg")] if script else ["-m", module]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               *entry, *args]
    if popen:
        return subprocess.Popen(command, cwd=cwd, text=True, **popen)
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"torchrun {' '.join(entry + list(args))} exited {proc.returncode}:\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def wait_for_checkpoint(out: Path, timeout: float = 120) -> None:
    """Return once a run under ``out`` has written its first checkpoint (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while not list(out.glob("*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)


def weights(run: Path) -> dict[str, torch.Tensor]:
    (path,) = run.glob("*/checkpoint.pt")
    return {k: v for k, v in checkpoint.load(path)["model"].items() if isinstance(v, torch.Tensor)}


def only_row(results: Path) -> dict:
    rows = read_results(results).to_pylist()
    assert len(rows) == 1
    return rows[0]


# --- in one process --------------------------------------------------------------------------

def test_without_torchrun_nothing_starts():
    assert distributed.from_env({}) == distributed.World()
    world = distributed.from_env({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"})
    assert (world.rank, world.local_rank, world.size, world.writer) == (1, 1, 2, False)
    assert not collective.active() and collective.world_size() == 1
    x = torch.arange(5.0)
    assert collective.all_sum(x) is x and torch.equal(collective.gather_rows(x), x)


def test_a_bad_torchrun_environment_is_one_usage_error():
    with pytest.raises(Exception, match="outside WORLD_SIZE"):
        distributed.from_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(Exception, match="whole numbers"):
        distributed.from_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_shares_cover_every_item_once_in_order(monkeypatch):
    for world in (1, 2, 3, 7):
        for n in (0, 1, 5, 64, 65):
            shares = []
            for rank in range(world):
                monkeypatch.setattr(collective, "rank", lambda rank=rank: rank)
                monkeypatch.setattr(collective, "world_size", lambda world=world: world)
                shares.append(list(range(n))[collective.my_share(n)])
            assert sum(shares, []) == list(range(n))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_streams_are_keyed_and_leave_the_callers_stream_alone():
    assert distributed.stream_seed(0, "train", 0, 1, 0) == distributed.stream_seed(0, "train", 0, 1, 0)
    assert distributed.stream_seed(0, "train", 0, 1, 0) != distributed.stream_seed(0, "train", 0, 1, 1)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    with distributed.seeded(0, "evaluate", 0):
        a = torch.rand(3)
    with distributed.seeded(0, "evaluate", 0):
        b = torch.rand(3)
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), before)


# --- collectives against one process, in a 2-rank job -----------------------------------------

@pytest.mark.distributed
def test_collectives_match_one_process_over_the_whole_batch(tmp_path):
    """GlobalBatchNorm's outputs, input and weight gradients and running statistics; EM on
    halves; gathered rows of unequal length: each against one process over everything."""
    torchrun(str(tmp_path), cwd=REPO, module="tests.ddp_collectives")
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for report in reports:
        assert report == {"batchnorm": "ok", "em": "ok", "gather": "ok"}


# --- the harness under torchrun ----------------------------------------------------------------

def reference_two_ranks(data, epochs: int, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """What a 2-rank run computes by design, in one process: each global batch split in two
    contiguous halves, each half on its rank's stream, the gradients of the halves' mean losses
    averaged with weights (half size / batch size), one Adam step per global batch."""
    config = RunConfig(train=TrainConfig(epochs=epochs, batch_size=batch, seed=seed))
    model = create_model("gaussian", data, config=config)
    objective = build_objective(model.combo)
    optimizer = torch.optim.Adam(model.stage_parameters(prior=False), lr=config.train.lr, fused=True)
    shuffle = torch.Generator().manual_seed(seed)
    n = data.train.shape[0]
    steps = -(-n // batch)
    model.train()
    for epoch in range(epochs):
        streams = []
        for rank in range(2):
            torch.manual_seed(distributed.stream_seed(seed, "train", 0, epoch, rank))
            streams.append(torch.get_rng_state())
        order = torch.randperm(n, generator=shuffle)
        for i in range(steps):
            idx = order[i * batch:(i + 1) * batch]
            halves = idx.tensor_split(2)  # my_share's split for 2 ranks
            optimizer.zero_grad()
            for rank, half in enumerate(halves):
                torch.set_rng_state(streams[rank])
                terms = model(data.batch(data.train[half], None, train=True), objective.draws)
                loss, _ = objective.loss(terms, (epoch * steps + i) / (epochs * steps))
                (loss * half.shape[0] / idx.shape[0]).backward()
                streams[rank] = torch.get_rng_state()
            optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}


@pytest.mark.distributed
def test_two_ranks_train_as_designed_and_score_as_one_process(tmp_path, digits):
    """gaussian, 2 epochs, global batch 64: the weights equal the designed 2-rank reference;
    the run writes one row, one checkpoint and one set of PNGs; the IS NLL and the FID (its
    samples drawn by both ranks) scored again by one process from the same checkpoint and seed
    equal the 2-rank figures."""
    args = ["eval", "--combo", "gaussian", "--epochs", "2", "--batch-size", "64", "--iw-samples", "8", "--quiet",
            "--checkpoint-every", "0", "--fid-samples", "300"]
    torchrun(*args, "--out", "runs", "--results", "rows", cwd=tmp_path, script=True)
    got = weights(tmp_path / "runs")
    want = reference_two_ranks(digits, epochs=2, batch=64)
    assert set(want) <= set(got)
    for name, tensor in want.items():
        if tensor.is_floating_point():
            scale = tensor.abs().max().item() or 1.0
            torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-5 * scale, msg=name)

    (run,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in run.iterdir()) == [  # .lock: the run folder's, held by rank 0 alone
        ".lock", "checkpoint.pt", "interpolations.png", "metrics.jsonl", "reconstructions.png", "samples-mean.png",
        "samples.png", "traversals.png"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("epoch") for r in records if "epoch" in r] == [1, 2]  # one writer
    two = only_row(tmp_path / "rows")
    assert (two["world_size"], two["batch_size"]) == (2, 64)

    vaereg_cli(*args, "--resume", "--out", "runs", "--results", "rows-one", cwd=tmp_path)
    one = only_row(tmp_path / "rows-one")
    assert one["world_size"] == 1
    for key in ("nll_nats", "nelbo_nats", "active_units", "fid"):
        assert one[key] == pytest.approx(two[key], rel=1e-12), key
    assert json.loads(one["kl_per_level"]) == pytest.approx(json.loads(two["kl_per_level"]), rel=1e-9)


@pytest.mark.distributed
def test_vq_codebooks_equal_one_process_with_the_global_batch(tmp_path):
    """vq trains without noise, so 2 ranks reproduce one process: the EMA codebook (its sums
    and counts all-reduced before every update) and every other weight."""
    args = ["eval", "--combo", "vq", "--epochs", "1", "--batch-size", "64", *QUICK]
    torchrun(*args, "--out", "two", "--results", "rows-two", cwd=tmp_path)
    vaereg_cli(*args, "--out", "one", "--results", "rows-one", cwd=tmp_path)
    two, one = weights(tmp_path / "two"), weights(tmp_path / "one")
    books = [k for k in one if k.endswith(("codebook", "counts", "sums"))]
    assert books
    for name in one:
        if one[name].is_floating_point():
            scale = one[name].abs().max().item() or 1.0
            torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-5 * scale, msg=name)
    assert only_row(tmp_path / "rows-two")["codebook_usage"] == pytest.approx(
        only_row(tmp_path / "rows-one")["codebook_usage"])


@pytest.mark.distributed
def test_every_rank_holds_the_same_codebook_after_every_step(tmp_path):
    torchrun(str(tmp_path), "vq-steps", cwd=REPO, module="tests.ddp_collectives")
    report = json.loads((tmp_path / "rank0.json").read_text())
    assert report["updates"] > 20 and report["restarts"] > 0 and report["max_difference"] == 0.0


@pytest.mark.distributed
def test_nvae_trains_under_two_ranks_with_synchronised_batchnorm(tmp_path):
    args = ["eval", "--combo", "nvae", "--epochs", "1", "--set", "encoder.width=8", *QUICK]
    torchrun(*args, "--out", "runs", "--results", "rows", cwd=tmp_path)
    row = only_row(tmp_path / "rows")
    assert row["world_size"] == 2 and row["nll_nats"] > 0
    state = weights(tmp_path / "runs")
    tracked = [k for k in state if k.endswith("num_batches_tracked")]
    assert tracked and all(int(state[k]) > 0 for k in tracked)  # every BatchNorm saw the batches


@pytest.mark.distributed
def test_a_prior_fitted_after_the_autoencoder_trains_under_two_ranks(tmp_path):
    """PixelCNN by gradient under DDP equals one process (vq is noise-free). A GMM fitted by
    EM with reduced statistics is fitted (its reduction is checked against one process in
    ``test_collectives_match_one_process_over_the_whole_batch``)."""
    for combo, extra in (("vq+pixelcnn", ["--set", "prior.width=8", "--set", "prior.layers=2"]),
                         ("gaussian-mlp+prior=gmm", ["--set", "prior.components=3"])):
        args = ["train", "--combo", combo, "--epochs", "1", "--quiet", *extra]
        torchrun(*args, "--out", f"two-{combo}", cwd=tmp_path)
        vaereg_cli(*args, "--out", f"one-{combo}", cwd=tmp_path)
        two, one = weights(tmp_path / f"two-{combo}"), weights(tmp_path / f"one-{combo}")
        if combo.endswith("gmm"):
            assert not torch.allclose(two["prior.weights"], torch.full((3,), 1 / 3))  # EM moved it
        else:
            prior = [k for k in one if k.startswith("encoder.prior.") or k.startswith("prior.")]
            assert prior
            for name in prior:
                if one[name].is_floating_point():
                    torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.distributed
def test_a_killed_rank_ends_the_job_naming_it_and_resume_finishes_it(tmp_path):
    args = ["eval", "--combo", "gaussian-mlp", "--epochs", "30", "--set", "encoder.width=16",
            "--set", "decoder.width=16", *QUICK]
    torchrun(*args, "--out", "straight", "--results", "straight-rows", cwd=tmp_path)
    job = torchrun(*args, "--out", "killed", "--results", "killed-rows", cwd=tmp_path, stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_checkpoint(tmp_path / "killed")
    rank1 = next(pid for pid in worker_pids(job.pid) if environ(pid).get("RANK") == "1")
    os.kill(rank1, signal.SIGKILL)
    killed_at = time.monotonic()
    output, _ = job.communicate(timeout=120)
    assert job.returncode != 0 and time.monotonic() - killed_at < 60
    assert "rank      : 1" in output or "rank: 1" in output, output[-3000:]
    assert not list((tmp_path / "killed-rows").glob("*.parquet"))
    torchrun(*args, "--resume", "--out", "killed", "--results", "killed-rows", cwd=tmp_path)
    straight, resumed = only_row(tmp_path / "straight-rows"), only_row(tmp_path / "killed-rows")
    for key in ("nll_nats", "nelbo_nats", "nll_bpd", "active_units", "kl_per_level", "config_hash"):
        assert resumed[key] == straight[key], key


@pytest.mark.distributed
def test_sigterm_to_torchrun_saves_the_step_every_rank_finished_and_resume_equals_a_straight_run(tmp_path):
    """SIGTERM to the launcher (as Slurm's scancel or a preemption sends it): every rank holds it
    to the end of the step in flight, the ranks agree on the step, rank 0 checkpoints the epoch so
    far (each rank's random state in it), they exit 143 with one line, and --resume on two ranks
    gives the row of a run never stopped."""
    args = ["eval", "--combo", "gaussian-mlp", "--epochs", "30", "--set", "encoder.width=16",
            "--set", "decoder.width=16", "--batch-size", "16", *QUICK, "--checkpoint-every", "1000"]
    torchrun(*args, "--out", "straight", "--results", "straight-rows", cwd=tmp_path)
    job = torchrun(*args, "--out", "stopped", "--results", "stopped-rows", "--checkpoint-every", "0", cwd=tmp_path,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for_checkpoint(tmp_path / "stopped")
    job.send_signal(signal.SIGTERM)
    output, _ = job.communicate(timeout=120)
    assert job.returncode != 0
    assert output.count("stopped by SIGTERM; the checkpoint") == 2, output[-3000:]  # one line per rank
    assert "[rank0]: Traceback" not in output and "[rank1]: Traceback" not in output  # (torchrun's own follows)
    (saved,) = (tmp_path / "stopped").glob("*/checkpoint.pt")
    within = checkpoint.load(saved)["within"]
    assert len(within["rng"]) == 2 and not torch.equal(within["rng"][0]["cpu"], within["rng"][1]["cpu"])
    assert not (tmp_path / "stopped-rows").exists() or not list((tmp_path / "stopped-rows").glob("*.parquet"))
    torchrun(*args, "--resume", "--out", "stopped", "--results", "stopped-rows", cwd=tmp_path)
    straight, resumed = only_row(tmp_path / "straight-rows"), only_row(tmp_path / "stopped-rows")
    for key in ("nll_nats", "nelbo_nats", "nll_bpd", "active_units", "config_hash"):
        assert resumed[key] == straight[key], key
    stopped, straight_weights = weights(tmp_path / "stopped"), weights(tmp_path / "straight")
    assert all(torch.equal(stopped[name], straight_weights[name]) for name in straight_weights)


def worker_pids(parent: int) -> list[int]:
    """Every descendant of ``parent`` (torchrun's workers)."""
    found, frontier = [], [parent]
    while frontier:
        pid = frontier.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            found += map(int, children)
            frontier += map(int, children)
    return found


def environ(pid: int) -> dict[str, str]:
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    return dict(e.decode(errors="replace").split("=", 1) for e in entries if b"=" in e)


def two_nodes(tmp_path: Path, *args: str) -> list[subprocess.Popen]:
    """The README's many-node command on localhost: two torchrun launchers, one process each,
    meeting at --rdzv-endpoint with --nnodes 2 and --node-rank."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={rank}", "--nproc-per-node=1",
         f"--rdzv-endpoint=127.0.0.1:{port}", "-m", "vaereg_harness.cli", *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]


@pytest.mark.distributed
def test_two_nodes_on_localhost_train_as_one_job(tmp_path):
    nodes = two_nodes(tmp_path, "train", "--combo", "gaussian-mlp", "--epochs", "1", "--quiet", "--out", "runs")
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert "checkpoint" in outputs[0] and "checkpoint" not in outputs[1]  # node 1 prints nothing
    assert len(list((tmp_path / "runs").glob("*/checkpoint.pt"))) == 1


@pytest.mark.distributed
def test_a_node_whose_peer_dies_ends_with_one_line(tmp_path):
    """No launcher stops node 0's rank when node 1's dies: its next collective fails, and it
    says so in one line naming itself, without a traceback of its own."""
    nodes = two_nodes(tmp_path, "train", "--combo", "gaussian-mlp", "--epochs", "200", "--quiet", "--out", "runs",
                      "--checkpoint-every", "0")
    wait_for_checkpoint(tmp_path / "runs")
    rank1 = next(pid for pid in worker_pids(nodes[1].pid) if environ(pid).get("RANK") == "1")
    os.kill(rank1, signal.SIGKILL)
    killed_at = time.monotonic()
    outputs = [node.communicate(timeout=120)[0] for node in nodes]
    assert time.monotonic() - killed_at < 60
    assert nodes[0].returncode != 0 and nodes[1].returncode != 0
    assert "Error: rank 0: lost contact with another rank of the job" in outputs[0]
    assert "[rank0]: Traceback" not in outputs[0]  # (torchrun's own summary follows, with its traceback)
    assert "rank      : 1" in outputs[1]  # node 1's torchrun names its dead rank


@pytest.mark.distributed
def test_a_run_killed_in_one_process_resumes_on_two_ranks(tmp_path):
    """The checkpoint does not depend on the world size: a 1-process run killed after its
    first checkpoint finishes under 2 ranks, its metrics log covering every epoch once."""
    args = ["eval", "--combo", "gaussian-mlp", "--epochs", "30", "--set", "encoder.width=16",
            "--set", "decoder.width=16", *QUICK, "--out", "runs", "--results", "rows"]
    job = subprocess.Popen([sys.executable, "-m", "vaereg_harness.cli", *args], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_checkpoint(tmp_path / "runs")
    job.send_signal(signal.SIGKILL)
    job.wait()
    (saved,) = (tmp_path / "runs").glob("*/checkpoint.pt")
    assert checkpoint.load(saved)["epoch"] < 30  # killed mid-training
    torchrun(*args, "--resume", cwd=tmp_path)
    row = only_row(tmp_path / "rows")
    assert row["world_size"] == 2
    epochs = [json.loads(line).get("epoch") for line in (saved.parent / "metrics.jsonl").read_text().splitlines()]
    assert {e for e in epochs if e} == set(range(1, 31))
