"""The steps of the GPU check (issue 27), each appending rows to one Markdown table; run by
``benchmarks/gpu_check.sh``, which gives each step its time budget and writes a failed step's row.

    python -m benchmarks.gpu_check header  --table T --device cuda
    python -m benchmarks.gpu_check tests   --table T --device cuda        # pytest -m gpu tests/test_cuda.py
    python -m benchmarks.gpu_check ratio training-gaussian-mlp|training-gaussian|nll --table T --device cuda
    python -m benchmarks.gpu_check family gaussian|vq|nvae --table T --device cuda
    python -m benchmarks.gpu_check fashion gaussian|nvae --table T --device cuda [--data-root DIR]

``ratio``: the harness against the fresh bare loop (``benchmarks/test_fresh_process.py``'s
processes, on ``--device``): training throughput of gaussian-mlp and gaussian, and IS-NLL
throughput of gaussian-mlp. ``family``: the trainer on digits, eager (bf16 autocast on CUDA, as
the trainer runs there) and ``--compile``. ``fashion``: one ``vaereg eval`` on Fashion-MNIST with
FID. ``--tiny``: budgets for a dry run of the plumbing on a CPU."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("step", "check", "seconds", "NLL (nats)", "FID", "figures", "status")
NO_CUDA = "skipped: no CUDA"
#: digits' 1437 training images cut to 22 full batches of 64: no recompile for a short last batch
FULL_BATCHES = 22 * 64


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "/").replace("\n", " ")


def append(table: Path, step: str, check: str, status: str, seconds: float | None = None, nll: float | None = None,
           fid: float | None = None, figures: str = "") -> None:
    """One row of the table (and the same row on stdout)."""
    line = "| " + " | ".join(cell(v) for v in (step, check, seconds, nll, fid, figures or None, status)) + " |"
    with table.open("a") as f:
        f.write(line + "\n")
    print(line, flush=True)


def last_line(text: str) -> str:
    """The last non-empty line of a process's output: its error, as one line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def cuda_ready(device: str) -> bool:
    return device == "cuda" and torch.cuda.is_available()


def header(args: argparse.Namespace) -> None:
    """The device the check ran on, then the table's head."""
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("GPU_CHECK_DEVICE=cuda, but torch sees no CUDA device")
        name = torch.cuda.get_device_name(0)
        memory = torch.cuda.get_device_properties(0).total_memory / 2**30
        device = (f"{name} ({memory:.0f} GiB), CUDA {torch.version.cuda}, "
                  f"cuDNN {torch.backends.cudnn.version()}")
    else:
        device = "CPU only (GPU_CHECK_DEVICE=cpu): a dry run of the plumbing at tiny budgets; CUDA rows are skipped"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.table.write_text(
        f"# GPU check\n\ndevice: {device}; torch {torch.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPU cores; {when}\n\n"
        f"| {' | '.join(COLUMNS)} |\n|{'---|' * len(COLUMNS)}\n")
    print(args.table.read_text(), end="", flush=True)


def tests(args: argparse.Namespace) -> None:
    """``pytest -m gpu tests/test_cuda.py``: one row for the whole, one per test not passed.
    pyproject's addopts are dropped: they ask for pytest-xdist, which the GPU machine lacks."""
    report = args.work / "junit.xml"
    began = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-m", "gpu", "-p", "no:cacheprovider",
               f"--junitxml={report}", "tests/test_cuda.py"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if not report.is_file():
        raise SystemExit(f"pytest wrote no report: {last_line(proc.stdout + proc.stderr)}")
    outcomes: dict[str, list[tuple[str, str, float]]] = {"passed": [], "failed": [], "skipped": []}
    for case in ET.parse(report).getroot().iter("testcase"):
        problem = next((case.find(kind) for kind in ("failure", "error", "skipped") if case.find(kind) is not None),
                       None)
        kind = "passed" if problem is None else "skipped" if problem.tag == "skipped" else "failed"
        message = "" if problem is None else last_line(problem.get("message") or problem.text or problem.tag)
        outcomes[kind].append((case.get("name", "?"), message, float(case.get("time", 0))))
    counts = ", ".join(f"{len(v)} {k}" for k, v in outcomes.items() if v)
    skipped = outcomes["skipped"]
    if skipped and not outcomes["passed"] and not outcomes["failed"] and all("no CUDA" in m for _, m, _ in skipped):
        append(args.table, "tests", f"tests/test_cuda.py ({len(skipped)} tests)", NO_CUDA, seconds)
        return
    status = "ok" if not outcomes["failed"] else f"FAILED: {len(outcomes['failed'])} of the tests"
    append(args.table, "tests", "tests/test_cuda.py", status, seconds, figures=counts)
    for name, message, spent in outcomes["failed"]:
        append(args.table, "tests", name, f"FAILED: {message}", spent)


def ratio(args: argparse.Namespace) -> None:
    """Harness over bare throughput, each side in a fresh process on ``--device``, as
    ``benchmarks/test_fresh_process.py`` measures on a CPU; one round each (a process costs
    seconds to start, a round of both sides 15-30 s of the check's 6 minutes)."""
    from benchmarks.test_fresh_process import MODELS, run
    from vaereg_harness.data import load_data

    digits = load_data("digits")
    torch.save(digits.train.clone(), args.work / "train.pt")
    torch.save(digits.test.clone(), args.work / "test.pt")
    # a dry run on a shared CPU: one thread a side (torch's default oversubscribes a loaded machine)
    device = ["--device", args.device, *(["--threads", "1"] if args.tiny else [])]
    if args.which == "nll":
        k = "100" if args.tiny else "2000"
        bare = run("bare.py", "--model", "mlp", "--nll", k, "--data", str(args.work / "test.pt"), *device)
        harness = run("harness.py", "--combo", "gaussian-mlp", "--nll", k, "--out", str(args.work), *device)
        check = f"IS NLL gaussian-mlp, K={k}, {harness['images']} test images"
        extra = f"; NLL bare {bare['nll']:.2f}, harness {harness['nll']:.2f} (their own draws)"
    else:
        combo = args.which.removeprefix("training-")
        epochs = "1" if args.tiny else "30"
        bare = run("bare.py", "--model", MODELS[combo], "--epochs", epochs, "--data", str(args.work / "train.pt"),
                   *device)
        harness = run("harness.py", "--combo", combo, "--epochs", epochs, "--out", str(args.work), *device)
        if bare["parameters"] != harness["parameters"]:
            raise SystemExit(f"bare and harness {combo} differ: {bare['parameters']} != {harness['parameters']} "
                             "parameters")
        check = f"training {combo}, {epochs} epoch{'' if epochs == '1' else 's'} of digits, batch 64"
        extra = ""
    speed = bare["seconds"] / harness["seconds"]
    figures = (f"harness/bare {speed:.2f} (target 0.9); harness {harness['images'] / harness['seconds']:.0f} img/s, "
               f"bare {bare['images'] / bare['seconds']:.0f} img/s{extra}")
    append(args.table, "ratio", check, "ok", harness["seconds"], figures=figures)


def family(args: argparse.Namespace) -> None:
    """The trainer on digits (22 full batches), 2 epochs, eager then ``--compile``: epoch 1
    holds the compilation, epoch 2 is the steady throughput."""
    from vaereg_harness.api import RunConfig, TrainConfig, create_model, load_data, train_model

    digits = load_data("digits")
    data = dataclasses.replace(digits, train=digits.train[:FULL_BATCHES],
                               train_labels=digits.train_labels[:FULL_BATCHES])
    precision = "bf16 autocast" if args.device == "cuda" else "fp32"
    eager = None
    for compiled in (False, True):
        mode = "compile" if compiled else "eager"
        check = f"train {args.which} on digits, {mode}, {precision}"
        if compiled and not cuda_ready(args.device):
            append(args.table, "family", check, NO_CUDA)
            continue
        config = RunConfig(train=TrainConfig(epochs=2, device=args.device, compile=compiled, seed=0))
        model = create_model(args.which, data, config=config)
        began = time.perf_counter()
        _, path = train_model(model, data, config, args.work / mode, progress=False)
        seconds = time.perf_counter() - began
        epochs = [r for r in map(json.loads, (path.parent / "metrics.jsonl").read_text().splitlines())
                  if r.get("stage") == "autoencoder"]
        first, last = epochs[0], epochs[-1]
        figures = (f"epoch 1 {data.train.shape[0] / first['images_per_s']:.1f} s; epoch 2 "
                   f"{last['images_per_s']:.0f} img/s, loss {last['loss']:.2f}")
        if eager is not None:
            figures += (f"; x{last['images_per_s'] / eager['images_per_s']:.2f} eager's img/s, "
                        f"loss {last['loss'] - eager['loss']:+.2f} from eager's (other draws)")
        eager = eager or last
        append(args.table, "family", check, "ok", seconds, figures=figures)


def fashion(args: argparse.Namespace) -> None:
    """One ``vaereg eval`` on Fashion-MNIST: 1 epoch, the IS NLL, FID against the test split
    with the classifier extractor (the machine has no network for Inception's weights), cached in
    ``$VAEREG_CACHE`` for the next run. A dry run scores FID for gaussian alone: the classifier's
    690 training steps take minutes on a CPU."""
    import pyarrow.dataset as ds

    k, samples = ("4", "64") if args.tiny else ("100", "1000")
    budget = ["--set", "dataset.train_images=256", "--eval-images", "64", "--threads", "1"] if args.tiny else []
    fid = ["--no-fid"] if args.tiny and args.which != "gaussian" else []
    command = [sys.executable, "-c", "from vaereg_harness.launch.signals import console; console()",
               "eval", "--combo", args.which, "--dataset", "fashion-mnist", "--data-root", str(args.data_root),
               "--epochs", "1", "--iw-samples", k, "--fid-samples", samples, "--fid-extractor", "classifier",
               "--device", args.device, "--seed", "0", "--quiet", "--out", str(args.work / "runs"),
               "--results", str(args.work / "results"), *budget, *fid]
    began = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"vaereg eval exited {proc.returncode}: {last_line(proc.stderr)}")
    rows = [r for r in ds.dataset(args.work / "results", format="parquet").to_table().to_pylist()
            if r["combo"] == args.which]
    row = max(rows, key=lambda r: r["created_at"])
    images = f"{row['eval_images']} test images" if row["eval_images"] else "the 10000 test images"
    check = f"Fashion-MNIST {args.which}, 1 epoch{' of 256 images' if args.tiny else ''}, K={k} on {images}"
    figures = (f"train {row['train_seconds']:.1f} s ({row['train_images_per_s']:.0f} img/s), "
               f"eval {row['eval_seconds']:.1f} s")
    if row["fid"] is not None:
        figures += (f"; FID of {row['fid_samples']} samples, floor {row['fid_floor']:.2f}, classifier accuracy "
                    f"{row['fid_extractor_accuracy']:.3f}, obtained in {row['fid_extractor_seconds']:.1f} s")
    append(args.table, "fashion", check, "ok", seconds, row["nll_nats"], row["fid"], figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["header", "tests", "ratio", "family", "fashion"])
    parser.add_argument("which", nargs="?", help="ratio: training-gaussian-mlp, training-gaussian or nll; "
                                                 "family, fashion: the combo")
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="dry-run budgets (a CPU)")
    parser.add_argument("--data-root", type=Path, default=ROOT / "data" / "fashion-mnist")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix=f"gpu-check-{args.step}-") as work:
        args.work = Path(work)
        {"header": header, "tests": tests, "ratio": ratio, "family": family, "fashion": fashion}[args.step](args)


if __name__ == "__main__":
    main()
