"""Training and evaluation of ``gaussian`` at 28x28 (issue 28): this tree against another (a
baseline checkout), in alternating rounds of fresh processes, on a synthetic IDX set.

    python benchmarks/eval28.py --base /path/to/baseline/checkout [--threads 1] [--rounds 3]

Each round trains 1 epoch (``--train`` images, batch 64) and then scores ``--test`` images with
the importance-sampled NLL (K=``--k``, chunks of 128, seed 0), once per tree, the trees' order
alternating. Reported: each side's fastest round, the ratios new / base, and the mean NLL of each
side (same seed and weights, so the same draws: they agree to float rounding)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_data(root: Path, train: int, test: int) -> None:
    """Uniform random 28x28 images and labels 0-9 as gzipped IDX files in ``root``."""
    sys.path.insert(0, str(HERE))
    from scaling import write_idx

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("t10k", test)):
        write_idx(root / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def measure(task: dict) -> dict:
    """One round of one tree, in this (fresh) process."""

    import vaereg_gaussian
    from vaereg_harness.api import RunConfig, create_model, load_data, train_model
    from vaereg_harness.launch import threads
    from vaereg_harness.metrics.passes import evaluation_pass
    from vaereg_harness.run.config import TrainConfig

    threads.configure(task["threads"])
    data = load_data("mnist", task["root"])
    config = RunConfig(train=TrainConfig(epochs=1, batch_size=64, device="cpu", threads=task["threads"],
                                         checkpoint_every=1e6))
    model = create_model("gaussian", data, config=config)
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        train_model(model, data, config, Path(out), progress=False)
        train_s = time.perf_counter() - began
    began = time.perf_counter()
    scored = evaluation_pass(model, data, task["k"], 128, progress=False, seed=0)
    eval_s = time.perf_counter() - began
    return {"train_s": train_s, "eval_s": eval_s, "nll": scored.nll.mean().item(),
            "plugin": vaereg_gaussian.__file__}


def fresh(tree: Path, task: dict) -> dict:
    """``measure`` in a new process whose modules (entry points' plugins included) come from ``tree``."""
    path = [tree, tree / "harness", tree / "plugins"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(task)], capture_output=True, text=True,
                          env=env, cwd=tree)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["plugin"].startswith(str(tree)):
        raise RuntimeError(f"{tree} imported {result['plugin']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, help="the baseline checkout (required)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return
    if args.base is None:
        parser.error("--base is required: the baseline checkout to compare with")
    trees = {"new": HERE.parent, "base": args.base.resolve()}
    with tempfile.TemporaryDirectory() as tmp:
        make_data(Path(tmp), args.train, args.test)
        task = {"root": tmp, "threads": args.threads, "k": args.k}
        runs: dict[str, list[dict]] = {"new": [], "base": []}
        for r in range(args.rounds):
            for side in (("new", "base") if r % 2 == 0 else ("base", "new")):
                runs[side].append(fresh(trees[side], task))
                row = runs[side][-1]
                print(f"round {r} {side}: train {row['train_s']:.1f} s, eval {row['eval_s']:.1f} s, "
                      f"NLL {row['nll']:.4f}", flush=True)
    draws = args.test * args.k
    best = {side: {key: min(row[key] for row in rows) for key in ("train_s", "eval_s")} for side, rows in runs.items()}
    print(f"\n{args.threads} thread(s), {args.train} training and {args.test} test images, K={args.k}; fastest round\n")
    print("| side | train s | train images/s | eval s | eval image-draws/s | mean NLL |\n|---|---|---|---|---|---|")
    for side in ("base", "new"):
        b = best[side]
        print(f"| {side} | {b['train_s']:.1f} | {args.train / b['train_s']:.0f} | {b['eval_s']:.1f} | "
              f"{draws / b['eval_s']:.0f} | {runs[side][0]['nll']:.4f} |")
    print(f"\nnew / base: training {best['base']['train_s'] / best['new']['train_s']:.2f}x, "
          f"evaluation {best['base']['eval_s'] / best['new']['eval_s']:.2f}x; "
          f"NLL new - base {runs['new'][0]['nll'] - runs['base'][0]['nll']:+.2e} nats")


if __name__ == "__main__":
    main()
