"""The scaling table of ``benchmarks/RESULTS.md``: cost against work, on synthetic data in the
real formats (IDX files for 28x28x1, a folder of PNGs for 32x32x3; digits for 8x8x1).

    python benchmarks/scaling.py [--device cpu|cuda] > scaling.md
    python benchmarks/scaling.py --pixelcnn-only [--threads 1]   # the PixelCNN sampling table alone

Every measurement runs in a fresh process of its own, so its peak memory (maximum resident set,
or CUDA's peak allocation) is that measurement's alone. Training: 1 epoch of 640 images in
steps of 64 (every stage the combo declares); evaluation: the IS NLL with K=100 on 64 test
images."""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

COMBOS = ["gaussian", "vq+pixelcnn", "nvae"]
TRAIN, TEST = 640, 64


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def make_data(root: Path) -> dict[str, tuple[str, str]]:
    """Data set name and root per image size."""
    rng = np.random.default_rng(0)
    idx = root / "idx"
    idx.mkdir()
    for split, n in (("train", TRAIN), ("t10k", TEST)):
        write_idx(idx / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(idx / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    png = root / "png"
    for split, n in (("train", TRAIN), ("test", TEST)):
        (png / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(png / split / f"{i}.png")
    return {"8x8x1": ("digits", "data"), "28x28x1": ("mnist", str(idx)), "32x32x3": (f"folder:{png}", "data")}


def peak_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(task: dict) -> dict:
    """One measurement, in this (fresh) process."""
    from vaereg import DataSpec, discrete
    from vaereg_harness.api import RunConfig, create_model, load_data, train_model
    from vaereg_harness.metrics.passes import evaluation_pass
    from vaereg_harness.run.config import TrainConfig
    from vaereg_pixelcnn.parts import PixelCNNConfig, PixelCNNPrior

    device = task["device"]
    if task["kind"] == "pixelcnn":
        side = task["side"]
        if task["threads"]:
            torch.set_num_threads(task["threads"])
        torch.manual_seed(0)
        net = PixelCNNPrior(DataSpec("codes", 1, side, side, 2), discrete(64, 8, side, side), PixelCNNConfig()).nets[0]
        net = net.to(device)
        seconds = {}
        for fast, rounds in ((True, 3), (False, 1)):  # the fastest of 3 cached runs; naive once (75 s at 32x32)
            for _ in range(rounds):
                began, began_cpu = time.perf_counter(), time.process_time()
                net.sample(16, side, side, fast=fast)
                if device == "cuda":
                    torch.cuda.synchronize()
                wall, cpu = time.perf_counter() - began, time.process_time() - began_cpu
                name = "fast" if fast else "naive"
                for key, took in ((name, wall), (f"{name}_cpu", cpu)):
                    seconds[key] = min(seconds.get(key, took), took)
        return {**seconds, "peak_mb": peak_mb(device)}
    data = load_data(task["dataset"], task["root"])
    config = RunConfig(train=TrainConfig(epochs=1, batch_size=64, device=device, checkpoint_every=1e6))
    model = create_model(task["combo"], data, config=config)
    result = {}
    with tempfile.TemporaryDirectory() as out:
        if task["kind"] == "train":
            reports, _ = train_model(model, data, config, Path(out), progress=False)
            result["train_images_per_s"] = sum(r.images for r in reports) / sum(r.seconds for r in reports)
        scored = data.test_subset(task.get("images", TEST))
        began = time.perf_counter()
        evaluation_pass(model, scored, task.get("k", 100), 128, progress=False)
        seconds = time.perf_counter() - began
    return {**result, "eval_seconds": seconds, "eval_images_per_s": scored.test.shape[0] / seconds,
            "peak_mb": peak_mb(device)}


def fresh(task: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(task)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pixelcnn_table(device: str, threads: int) -> None:
    print("PixelCNN prior sampling of 16 code maps (64 codes, default width and layers), cached against naive"
          f" recomputation (intra-op threads: {threads or torch.get_num_threads()}; the cached sampler runs on"
          " one on the CPU); wall and process CPU seconds\n")
    print("| code map | cached s | naive s | naive / cached | cached CPU s | naive CPU s | naive / cached, CPU "
          "| peak MB |\n|---|---|---|---|---|---|---|---|")
    for side in (8, 16, 32):
        r = fresh({"kind": "pixelcnn", "side": side, "device": device, "threads": threads})
        print(f"| {side}x{side} | {r['fast']:.3f} | {r['naive']:.2f} | {r['naive'] / r['fast']:.1f} | "
              f"{r['fast_cpu']:.3f} | {r['naive_cpu']:.2f} | {r['naive_cpu'] / r['fast_cpu']:.1f} | "
              f"{r['peak_mb']:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pixelcnn-only", action="store_true", help="only the PixelCNN sampling table")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads for PixelCNN sampling (0: default)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return
    device = args.device
    if args.pixelcnn_only:
        pixelcnn_table(device, args.threads)
        return
    with tempfile.TemporaryDirectory() as tmp:
        sets = make_data(Path(tmp))
        print(f"Training and evaluation ({device}; {TRAIN} training images, IS NLL K=100 on {TEST} test images)\n")
        print("| combo | image | train images/s | eval images/s | peak MB |\n|---|---|---|---|---|")
        for combo in COMBOS:
            for size, (dataset, root) in sets.items():
                r = fresh({"kind": "train", "combo": combo, "dataset": dataset, "root": root, "device": device})
                if "error" in r:
                    print(f"| `{combo}` | {size} | {r['error']} | | |", flush=True)
                    continue
                print(f"| `{combo}` | {size} | {r['train_images_per_s']:.0f} | {r['eval_images_per_s']:.1f} | "
                      f"{r['peak_mb']:.0f} |", flush=True)
        print("\nIS NLL of `gaussian` (untrained) on digits against K, 64 test images, and against the test"
              " images, K=100\n")
        print("| K | test images | seconds | images/s | peak MB |\n|---|---|---|---|---|")
        for k, images in ((100, 64), (1000, 64), (5000, 64), (100, 90), (100, 180), (100, 360)):
            r = fresh({"kind": "eval", "combo": "gaussian", "dataset": "digits", "root": "data", "device": device,
                       "k": k, "images": images})
            print(f"| {k} | {images} | {r['eval_seconds']:.2f} | {r['eval_images_per_s']:.1f} | {r['peak_mb']:.0f} |",
                  flush=True)
    print()
    pixelcnn_table(device, args.threads)


if __name__ == "__main__":
    main()
