"""Per-family utilisation at 28x28 (issue 28): for every preset the registry lists (so a new family
appears by itself) and the two-stage ``vq+pixelcnn``, on synthetic 28x28 IDX data of fixed sizes,
1 epoch at batch 64:

- FLOPs per image of a training step (forward, every optimiser's loss, backward) and per image x
  draw of the IS NLL, counted by ``torch.utils.flop_counter`` (in the plain process, after its timing);
- the harness's training images/s (``vaereg_harness.api.train_model``; per stage, as its stage
  reports time it) and IS-NLL image-draws/s (``evaluation_pass``), in a fresh process;
- the same for the plain loop of ``benchmarks/plain.py`` (vaereg's core, no harness), in a fresh
  process; harness/plain per stage and for the whole training call;
- achieved GFLOP/s and its fraction of the machine's fp32 peak (``benchmarks/peak.py``, measured
  in every round, alternating with the families; the best round counts);
- peak RSS of each child (after training, and after the IS NLL).

Rounds alternate harness and plain for every family (who goes first alternates); the fastest
round of each side counts. Both
sides and the peak run with the same fixed thread count (1 by default: on a shared 2-core machine
a 2-thread process beside a busy one slows 2.5-3x, which would swamp the ratio). The IS NLL is
scored once per group of families that share the same parts (the zoo's objectives on the gaussian
parts): it does not depend on the objective.

    python benchmarks/utilisation.py [--short] [--families a,b] [--rounds R] [--threads N] [--out FILE]
    python benchmarks/utilisation.py --profile FAMILY        # torch.profiler top ops, harness and plain

prints the Markdown tables (and writes them to ``--out``)."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
EXTRA = ("vq+pixelcnn",)  # a combo with a prior stage trained by gradient after the autoencoder
BATCH, K = 64, 100
PEAK_EVERY = 6  # families between two measurements of the peak


@dataclass(frozen=True)
class Sizes:
    train: int
    test: int
    rounds: int


FULL, SHORT = Sizes(train=256, test=4, rounds=2), Sizes(train=128, test=2, rounds=2)


def write_idx_set(root: Path, sizes: Sizes) -> Path:
    """Uniform-noise 28x28 images (and labels) in MNIST's IDX layout under ``root/idx``."""
    from benchmarks.scaling import write_idx

    rng = np.random.default_rng(0)
    idx = root / "idx"
    idx.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", sizes.train), ("t10k", sizes.test)):
        write_idx(idx / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(idx / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return idx


def families() -> list[str]:
    """Every preset the registry lists, then ``EXTRA``."""
    from vaereg.registry import get_registry

    return [*get_registry().presets, *EXTRA]


def parts_key(text: str) -> str:
    """What the IS NLL depends on: the parts and their options, not the objective."""
    from vaereg.combo import resolve
    from vaereg.specs import DataSpec

    combo = resolve(text, DataSpec("mnist", 1, 28, 28, 256))
    return json.dumps({slot: [entry.name, combo.options().get(slot)] for slot, entry in combo.parts.items()},
                      sort_keys=True, default=str)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def harness_side(task: dict) -> dict:
    """One harness measurement, in this (fresh) process."""
    import torch

    from vaereg_harness.api import RunConfig, create_model, load_data, train_model
    from vaereg_harness.metrics.passes import evaluation_pass
    from vaereg_harness.run.config import TrainConfig

    data = load_data("mnist", task["root"])
    config = RunConfig(train=TrainConfig(epochs=1, batch_size=BATCH, device="cpu", threads=task["threads"]))
    model = create_model(task["combo"], data, config=config)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if task.get("profile") else None
    if profiler:
        profiler.start()
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        reports, _ = train_model(model, data, config, Path(out), progress=False)
        seconds = time.perf_counter() - began
    result: dict = {"stages": {r.stage: {"seconds": r.seconds, "images": r.images} for r in reports},
                    "seconds": seconds, "train_peak_mb": peak_mb(), "threads": torch.get_num_threads()}
    if profiler:
        profiler.stop()
        result["profile"] = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    if task.get("nll") and model.combo.no_density is None:
        began = time.perf_counter()
        scored = evaluation_pass(model, data, task["nll"], 128, progress=False)
        result.update(nll_seconds=time.perf_counter() - began, nll_images=data.test.shape[0],
                      nll_draws=scored.iw_samples)
    result["peak_mb"] = peak_mb()
    return result


def child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=HERE.parent)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def harness(combo: str, root: Path, threads: int, nll: int | None, profile: bool = False) -> dict:
    task = {"combo": combo, "root": str(root), "threads": threads, "nll": nll, "profile": profile}
    return child([str(Path(__file__)), "--one", json.dumps(task)])


def plain(combo: str, root: Path, threads: int, nll: int | None, flops: bool, profile: bool = False) -> dict:
    return child([str(HERE / "plain.py"), "--combo", combo, "--data", str(root), "--threads", str(threads),
                  *(["--nll", str(nll)] if nll else []), *(["--flops"] if flops else []),
                  *(["--profile"] if profile else [])])


def fastest(runs: list[dict], key: str) -> dict | None:
    good = [r for r in runs if key in r]
    return min(good, key=lambda r: r[key]) if good else None


def fastest_stage(runs: list[dict], stage: str) -> dict | None:
    good = [r["stages"][stage] for r in runs if stage in r.get("stages", {})]
    return min(good, key=lambda s: s["seconds"]) if good else None


def measure(names: list[str], root: Path, sizes: Sizes, threads: int, saved: Path | None = None) -> dict:
    """For every family in turn, ``rounds`` alternating rounds of the harness and the plain loop
    (who goes first alternates); the peak before the first family and after every ``PEAK_EVERY``.
    With ``saved``, everything measured so far is written there (JSON) after each child."""
    groups: dict[str, str] = {}  # parts -> the first family scored with them
    scorer = {name: groups.setdefault(parts_key(name), name) for name in names}
    measured: dict = {"peaks": [], "runs": {}, "scorer": scorer, "sizes": asdict(sizes), "threads": threads}
    for i, name in enumerate(names):
        if i % PEAK_EVERY == 0:
            measured["peaks"].append(child([str(HERE / "peak.py"), "--json", "--threads", str(threads)]))
        nll = K if scorer[name] == name else None
        runs = measured["runs"][name] = {"harness": [], "plain": []}
        for r in range(sizes.rounds):
            for side in ("harness", "plain") if r % 2 == 0 else ("plain", "harness"):
                result = (harness(name, root, threads, nll) if side == "harness"
                          else plain(name, root, threads, nll, flops=r == 0))
                runs[side].append(result)
                print(f"{name} round {r + 1} {side}: " + (result.get("error") or f"{result['seconds']:.2f} s"),
                      file=sys.stderr, flush=True)
                if saved:
                    saved.write_text(json.dumps(measured))
    return measured


def best_peak(peaks: list[dict]) -> dict:
    """The best GFLOP/s of every key and of every timed shape over the peak runs."""
    best: dict[str, float] = {}
    rows: dict[tuple, dict] = {}
    for p in peaks:
        for key, value in p.get("peaks", {}).items():
            best[key] = max(best.get(key, 0.0), value)
        for row in p.get("rows", []):
            key = (row["precision"], row["kind"], row["shape"])
            if key not in rows or row["gflops"] > rows[key]["gflops"]:
                rows[key] = row
    return {"peaks": best, "rows": list(rows.values()), "skipped": peaks[-1].get("skipped") if peaks else None}


def fmt(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def utilisation_table(measured: dict, peak: float) -> str:
    runs, scorer = measured["runs"], measured["scorer"]
    lines = ["| family | stage | MFLOP/img (step) | harness img/s | plain img/s | harness/plain stage | "
             "harness/plain call | GFLOP/s | of peak | RSS MB | NLL MFLOP/(img·draw) | NLL harness img·draws/s | "
             "NLL plain img·draws/s | NLL harness/plain | NLL GFLOP/s | NLL of peak | NLL RSS MB |",
             "|" + "---|" * 17]
    for name, sides in runs.items():
        h_runs, p_runs = sides["harness"], sides["plain"]
        errors = [r["error"] for r in h_runs + p_runs if "error" in r] + ["not measured"]
        if not fastest(h_runs, "seconds") or not fastest(p_runs, "seconds"):
            lines.append(f"| `{name}` | | {errors[0]} |" + " |" * 14)
            continue
        counts = next((r["flops"] for r in p_runs if "flops" in r), {})
        h_call, p_call = fastest(h_runs, "seconds"), fastest(p_runs, "seconds")
        call = p_call["seconds"] / h_call["seconds"]
        stages = [s for s, v in h_call["stages"].items() if v["images"] > 0]
        for i, stage in enumerate(stages):
            hs, ps = fastest_stage(h_runs, stage), fastest_stage(p_runs, stage)
            per_image = counts.get("train" if stage == "autoencoder" else stage)
            h_rate, p_rate = hs["images"] / hs["seconds"], ps["images"] / ps["seconds"]
            gflops = None if per_image is None else per_image * h_rate / 1e9
            cells = [f"`{name}`" if i == 0 else "", stage, fmt(per_image and per_image / 1e6, 1), fmt(h_rate),
                     fmt(p_rate), fmt(h_rate / p_rate, 2), fmt(call, 2) if i == 0 else "", fmt(gflops, 1),
                     fmt(gflops and 100 * gflops / peak, 1) + ("%" if gflops else ""),
                     fmt(min(r["train_peak_mb"] for r in h_runs if "train_peak_mb" in r))]
            cells += nll_cells(name, scorer, runs, peak) if i == 0 else [""] * 7
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def nll_cells(name: str, scorer: dict, runs: dict, peak: float) -> list[str]:
    if scorer[name] != name:
        return [f"as `{scorer[name]}`"] + [""] * 6
    h, p = fastest(runs[name]["harness"], "nll_seconds"), fastest(runs[name]["plain"], "nll_seconds")
    if h is None or p is None:
        return ["no density"] + [""] * 6
    counts = next((r["flops"] for r in runs[name]["plain"] if "flops" in r), {})
    per_draw = counts.get("nll")
    h_rate, p_rate = (r["nll_images"] * r.get("nll_draws", K) / r["nll_seconds"] for r in (h, p))
    gflops = None if per_draw is None else per_draw * h_rate / 1e9
    rss = min(r["peak_mb"] for r in runs[name]["harness"] if "peak_mb" in r)
    return [fmt(per_draw and per_draw / 1e6, 2), fmt(h_rate), fmt(p_rate), fmt(h_rate / p_rate, 2),
            fmt(gflops, 1), fmt(gflops and 100 * gflops / peak, 1) + ("%" if gflops else ""), fmt(rss)]


def profile(name: str, root: Path, threads: int) -> str:
    """torch.profiler's top ops (self CPU time) of one training of ``name``, harness then plain."""
    out = []
    for side, result in (("harness", harness(name, root, threads, None, profile=True)),
                         ("plain", plain(name, root, threads, None, flops=False, profile=True))):
        out.append(f"{side} ({result.get('seconds', 0):.2f} s):\n{result.get('profile') or result.get('error')}")
    return "\n\n".join(out)


def main() -> None:
    sys.path.insert(0, str(HERE.parent))  # run as a script: ``benchmarks.*`` from the repository root
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", action="store_true", help="CI sizes: fewer images")
    parser.add_argument("--families", default=None, help="comma-separated families [every preset, and vq+pixelcnn]")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every side [1]")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this file")
    parser.add_argument("--save", type=Path, default=None, help="write the raw measurements here as they come (JSON)")
    parser.add_argument("--load", type=Path, default=None, help="only print the tables of saved measurements")
    parser.add_argument("--profile", metavar="FAMILY", default=None, help="profile one family's training instead")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(harness_side(json.loads(args.one))))
        return
    sizes = SHORT if args.short else FULL
    if args.rounds:
        sizes = Sizes(sizes.train, sizes.test, args.rounds)
    names = args.families.split(",") if args.families else families()
    began = time.perf_counter()
    if args.load:
        measured = json.loads(args.load.read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            root = write_idx_set(Path(tmp), sizes)
            if args.profile:
                print(profile(args.profile, root, args.threads))
                return
            measured = measure(names, root, sizes, args.threads, args.save)
    text = tables(measured, time.perf_counter() - began)
    print(text)
    if args.out:
        args.out.write_text(text)


def tables(measured: dict, seconds: float) -> str:
    from benchmarks.peak import table as peak_table

    sizes, threads = Sizes(**measured["sizes"]), measured["threads"]
    peak = best_peak(measured["peaks"])
    fp32 = peak["peaks"].get("fp32", float("nan"))
    return (f"Peak (fastest of {len(measured['peaks'])} runs, {threads} thread(s)): fp32 **{fp32:.1f} GFLOP/s** "
            f"(matmul {peak['peaks'].get('fp32/linear', 0):.1f}, conv2d {peak['peaks'].get('fp32/conv2d', 0):.1f})\n\n"
            f"{peak_table(peak['rows'], peak['skipped'])}\n\n"
            f"Utilisation at 28x28 ({sizes.train} training images, 1 epoch, batch {BATCH}; IS NLL K={K} on "
            f"{sizes.test} test images; {sizes.rounds} alternating rounds, fastest of each side; "
            f"{threads} thread(s); {seconds:.0f} s)\n\n"
            f"{utilisation_table(measured, fp32)}\n")


if __name__ == "__main__":
    main()
