"""Fashion-MNIST ``gaussian`` end to end (issue 28): ``vaereg eval`` of this tree against another
(a baseline checkout), in alternating rounds of fresh processes, with a warm classifier cache.

    python benchmarks/fashion_e2e.py --base /path/to/baseline/checkout [--rounds 2]

Each round runs the real-data tutorial's command (1 epoch of the 60,000 training images, NLL with
K=100 on 1,000 test images, FID of 1,000 samples) once per tree, the order alternating, and reads
its row. Reported: each side's fastest wall-clock round, its phases from the row, the NLL, and
new / base. The FID classifier is trained once beforehand into a shared cache, so neither side
pays for it."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
COMMAND = ["eval", "--combo", "gaussian", "--dataset", "fashion-mnist", "--epochs", "1", "--eval-images", "1000",
           "--iw-samples", "100", "--quiet"]
LAUNCH = "import sys; from vaereg_harness.launch.signals import console; sys.argv[0] = 'vaereg'; console()"


def vaereg(tree: Path, folder: Path, *args: str) -> float:
    """``vaereg ARGS`` run from ``tree`` (its modules first on the path) in ``folder``; its wall seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(tree / p) for p in ("", "harness", "plugins"))}
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LAUNCH, *args], cwd=folder, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: {proc.stderr.strip()[-2000:]}")
    return time.perf_counter() - began


def row_of(folder: Path) -> dict:
    import pyarrow.parquet as pq

    (path,) = (folder / "vaereg-results").glob("*.parquet")
    return pq.read_table(path).to_pylist()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the baseline checkout")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-root", type=Path, default=ROOT)
    args = parser.parse_args()
    trees = {"new": HERE.parent, "base": args.base.resolve()}
    common = [*COMMAND, "--data-root", str(args.data_root)]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"  # the classifier, trained once (its key is the data's content hash)
        warm = ("from pathlib import Path; from vaereg_harness.api import load_data; "
                "from vaereg_harness.metrics.classifier import cached_classifier; "
                f"cached_classifier(load_data('fashion-mnist', {str(args.data_root)!r}), Path({str(cache)!r}))")
        subprocess.run([sys.executable, "-c", warm], check=True)
        runs: dict[str, list[dict]] = {"new": [], "base": []}
        for r in range(args.rounds):
            for side in (("new", "base") if r % 2 == 0 else ("base", "new")):
                folder = Path(tmp) / f"{side}{r}"
                folder.mkdir()
                wall = vaereg(trees[side], folder, *common, "--cache-dir", str(cache))
                row = row_of(folder)
                runs[side].append({"wall": wall, "train": row["train_seconds"], "eval": row["eval_seconds"],
                                   "fid": row.get("fid_seconds") or 0.0, "nll": row["nll_nats"],
                                   "bpd": row["nll_bpd"], "FID": row["fid"]})
                print(f"round {r} {side}: {runs[side][-1]}", flush=True)
    best = {side: min(rows, key=lambda run: run["wall"]) for side, rows in runs.items()}
    print("\n| side | wall s | train s | eval s | FID s | NLL (nats) | bits/dim | FID |")
    print("|---|---|---|---|---|---|---|---|")
    for side in ("base", "new"):
        b = best[side]
        print(f"| {side} | {b['wall']:.0f} | {b['train']:.0f} | {b['eval']:.0f} | {b['fid']:.0f} | {b['nll']:.2f} | "
              f"{b['bpd']:.4f} | {b['FID']:.2f} |")
    ratio = {key: best["base"][key] / best["new"][key] for key in ("wall", "train", "eval")}
    print(f"\nnew / base, fastest round: end to end {ratio['wall']:.2f}x, training {ratio['train']:.2f}x, "
          f"evaluation {ratio['eval']:.2f}x")


if __name__ == "__main__":
    main()
