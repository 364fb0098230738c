"""The harness against references in fresh processes that import only torch (``bare.py``), and
the harness beside a busy process. Every side runs in a process of its own and times only its
own work; rounds alternate, and the fastest round of each side is compared."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
MODELS = {"gaussian-mlp": "mlp", "gaussian": "conv"}
# CI fails below these; the targets are 0.9 (harness/bare) and 0.7 (loaded/idle). CI's bounds are
# looser because the shared 2-core machine moves single rounds by 20% and more.
HARNESS_OVER_BARE_MIN, LOADED_OVER_IDLE_MIN = 0.75, 0.5


def run(script: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def alternate(rounds: int, **sides) -> dict[str, list[dict]]:
    """Run each side's command once per round, in turn."""
    results: dict[str, list[dict]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, command in sides.items():
            results[name].append(command())
    return results


def show(name: str, **figures: float) -> None:
    """Print the figures of one comparison (CI shows them with ``-s``)."""
    print(f"\n{name}: " + ", ".join(f"{k} = {v:.2f}" if isinstance(v, float) else f"{k} = {v}"
                                    for k, v in figures.items()))


def fastest(results: list[dict]) -> dict:
    return min(results, key=lambda r: r["seconds"])


@contextmanager
def busy_process():
    """One other process keeping a core busy, as on a shared machine or a CI runner."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spin.kill()
        spin.wait()


@pytest.fixture(scope="module")
def splits(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("splits")
    torch.save(digits.train.clone(), root / "train.pt")
    torch.save(digits.test.clone(), root / "test.pt")
    return root


@pytest.mark.parametrize("combo", list(MODELS))
def test_training_against_a_fresh_bare_loop(short, splits, tmp_path, combo):
    epochs = "3" if short else "5"
    results = alternate(
        3 if short else 5,
        bare=lambda: run("bare.py", "--model", MODELS[combo], "--epochs", epochs, "--data", str(splits / "train.pt")),
        harness=lambda: run("harness.py", "--combo", combo, "--epochs", epochs, "--out", str(tmp_path)),
    )
    bare, harness = fastest(results["bare"]), fastest(results["harness"])
    assert bare["parameters"] == harness["parameters"]  # the same model on both sides
    ratio = bare["seconds"] / harness["seconds"]  # harness throughput / bare throughput
    show(f"training {combo}", harness_over_bare=ratio, harness_images_per_s=harness["images"] / harness["seconds"],
         bare_images_per_s=bare["images"] / bare["seconds"], harness_threads=harness["threads"],
         bare_threads=bare["threads"])
    assert ratio >= HARNESS_OVER_BARE_MIN, f"harness/bare training throughput {ratio:.2f} < {HARNESS_OVER_BARE_MIN}"


def test_evaluation_against_a_fresh_bare_is_loop(splits, tmp_path):
    k = "1000"  # at K=100 a run lasts under a second, and the harness's extra ELBO pass per image shows
    results = alternate(
        3,
        bare=lambda: run("bare.py", "--model", "mlp", "--nll", k, "--data", str(splits / "test.pt")),
        harness=lambda: run("harness.py", "--combo", "gaussian-mlp", "--nll", k, "--out", str(tmp_path)),
    )
    bare, harness = fastest(results["bare"]), fastest(results["harness"])
    # the same initial weights on both sides: estimates computed independently agree to Monte-Carlo error
    assert harness["nll"] == pytest.approx(bare["nll"], rel=1e-4)
    ratio = bare["seconds"] / harness["seconds"]
    show(f"IS NLL gaussian-mlp, K={k}", harness_over_bare=ratio, bare_images_per_s=bare["images"] / bare["seconds"],
         harness_images_per_s=harness["images"] / harness["seconds"])
    assert ratio >= HARNESS_OVER_BARE_MIN, f"harness/bare IS NLL throughput {ratio:.2f} < {HARNESS_OVER_BARE_MIN}"


def test_training_beside_a_busy_process(short, splits, tmp_path):
    """The harness's default thread policy, idle and beside one busy process; the bare loop
    with torch's default threads under the same load, for comparison. Runs of 5 epochs in both
    modes: the policy's first look at the load comes 0.05 s in, a large share of shorter runs."""
    epochs = "5"

    def harness():
        return run("harness.py", "--combo", "gaussian-mlp", "--epochs", epochs, "--out", str(tmp_path))

    def loaded(command):
        def under_load():
            with busy_process():
                return command()
        return under_load

    bare = lambda: run("bare.py", "--model", "mlp", "--epochs", epochs, "--data", str(splits / "train.pt"))  # noqa: E731
    results = alternate(3 if short else 5, idle=harness, loaded=loaded(harness), bare_idle=bare,
                        bare_loaded=loaded(bare))
    idle, busy = fastest(results["idle"]), fastest(results["loaded"])
    ratio = idle["seconds"] / busy["seconds"]
    bare_ratio = fastest(results["bare_idle"])["seconds"] / fastest(results["bare_loaded"])["seconds"]
    show("training gaussian-mlp beside a busy process", loaded_over_idle=ratio, bare_loaded_over_idle=bare_ratio,
         idle_images_per_s=idle["images"] / idle["seconds"], loaded_images_per_s=busy["images"] / busy["seconds"],
         threads_idle=idle["threads"], threads_loaded=busy["threads"])
    assert ratio >= LOADED_OVER_IDLE_MIN, f"loaded/idle training throughput {ratio:.2f} < {LOADED_OVER_IDLE_MIN}"
