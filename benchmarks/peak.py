"""The machine's reachable dense GFLOP/s at the shapes vaereg's families use at 28x28, batch 64:
the largest ``nn.Linear`` (matmul) and ``nn.Conv2d`` calls of a few families' forward passes,
read off their modules with forward hooks, each timed alone (warm-up, then the best of several
repetitions). FLOPs are counted by ``torch.utils.flop_counter`` as the families' are, so a
family's achieved GFLOP/s over this peak is a fraction of like with like. fp32 on the CPU;
on CUDA (when there is one) bf16 and tf32 too.

    python benchmarks/peak.py [--threads N] [--device cpu|cuda] [--json]

prints a Markdown table (or one JSON line)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

SIDE, BATCH = 28, 64
#: Families whose layers give the shapes: the conv encoder and decoder, the MLP, VQ's and NVAE's convs.
SHAPE_FAMILIES = ("gaussian", "gaussian-mlp", "vq", "nvae")
PER_KIND = 4  # the largest shapes of each kind (by FLOPs per call) are timed
REPS, TARGET_S = 5, 0.05  # repetitions; each lasts about TARGET_S


@dataclass(frozen=True)
class Layer:
    """One dense call: ``linear`` (rows, in) x (out, in)^T or ``conv2d`` [N, C, H, W] * [O, C/g, kh, kw]."""

    kind: str
    input: tuple[int, ...]
    weight: tuple[int, ...]
    stride: tuple[int, ...] = (1, 1)
    padding: tuple[int, ...] = (0, 0)
    groups: int = 1

    def describe(self) -> str:
        if self.kind == "linear":
            return f"{self.input[0]}x{self.input[1]} @ {self.weight[1]}x{self.weight[0]}"
        n, c, h, w = self.input
        o, _, kh, kw = self.weight
        return f"{n}x{c}x{h}x{w} -> {o}, {kh}x{kw}/{self.stride[0]}"

    def call(self, dtype: torch.dtype, device: torch.device) -> Callable[[], torch.Tensor]:
        x = torch.randn(self.input, dtype=dtype, device=device)
        weight = torch.randn(self.weight, dtype=dtype, device=device)
        if self.kind == "linear":
            return lambda: F.linear(x, weight)
        return lambda: F.conv2d(x, weight, stride=self.stride, padding=self.padding, groups=self.groups)


def layer_shapes(families: tuple[str, ...] = SHAPE_FAMILIES, batch: int = BATCH, side: int = SIDE) -> list[Layer]:
    """Every distinct Linear and Conv2d call of the families' forward pass (one draw) on a batch
    of ``side`` x ``side`` images with 256 intensities."""
    from vaereg.combo import resolve
    from vaereg.model import VAE, Batch
    from vaereg.specs import DataSpec

    spec = DataSpec("mnist", 1, side, side, 256)
    seen: dict[Layer, None] = {}

    def record(module: nn.Module, inputs: tuple, _output) -> None:
        x = inputs[0]
        if isinstance(module, nn.Linear):
            seen[Layer("linear", (x.numel() // x.shape[-1], x.shape[-1]), tuple(module.weight.shape))] = None
        elif isinstance(module, nn.Conv2d) and isinstance(module.padding, tuple):
            seen[Layer("conv2d", tuple(x.shape), tuple(module.weight.shape), tuple(module.stride),
                       tuple(module.padding), module.groups)] = None

    for text in families:
        torch.manual_seed(0)
        model = VAE(resolve(text, spec))
        hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        with torch.no_grad():
            model(Batch(torch.rand(batch, 1, side, side)))
        for hook in hooks:
            hook.remove()
    return list(seen)


def flops(fn: Callable[[], torch.Tensor]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def best_seconds(fn: Callable[[], torch.Tensor], device: torch.device) -> float:
    """Seconds per call: a warm-up, then the best of ``REPS`` timed repetitions of enough calls
    to last about ``TARGET_S`` each."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        fn()
    sync()
    began = time.perf_counter()
    fn()
    sync()
    calls = max(1, int(TARGET_S / max(time.perf_counter() - began, 1e-6)))
    best = float("inf")
    for _ in range(REPS):
        began = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (time.perf_counter() - began) / calls)
    return best


def precisions(device: torch.device) -> dict[str, torch.dtype]:
    return {"fp32": torch.float32} if device.type == "cpu" else {
        "fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


def measure(device: torch.device, layers: list[Layer]) -> list[dict]:
    """GFLOP/s of the ``PER_KIND`` largest calls of each kind, in each precision of ``device``."""
    rows = []
    for name, dtype in precisions(device).items():
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = name == "tf32"
        for kind in ("linear", "conv2d"):
            mine = [(flops(layer.call(dtype, device)), layer) for layer in layers if layer.kind == kind]
            for count, layer in sorted(mine, key=lambda pair: -pair[0])[:PER_KIND]:
                seconds = best_seconds(layer.call(dtype, device), device)
                rows.append({"precision": name, "device": device.type, **asdict(layer), "shape": layer.describe(),
                             "flops": count, "gflops": count / seconds / 1e9})
    return rows


def peaks(rows: list[dict]) -> dict[str, float]:
    """The best GFLOP/s per precision and kind (``fp32/linear``), and ``fp32`` over both kinds."""
    best: dict[str, float] = {}
    for row in rows:
        for key in (f"{row['precision']}/{row['kind']}", row["precision"]):
            best[key] = max(best.get(key, 0.0), row["gflops"])
    return best


def table(rows: list[dict], skipped: str | None = None) -> str:
    lines = ["| precision | op | shape (batch 64, 28x28) | MFLOP/call | GFLOP/s |", "|---|---|---|---|---|"]
    lines += [f"| {r['precision']} ({r['device']}) | {'matmul' if r['kind'] == 'linear' else 'conv2d'} | "
              f"{r['shape']} | {r['flops'] / 1e6:.1f} | {r['gflops']:.1f} |" for r in rows]
    if skipped:
        lines.append(f"| bf16, tf32 | | skipped: {skipped} | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads [torch's default]")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of the table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    layers = layer_shapes()
    rows = measure(torch.device("cpu"), layers)
    skipped = None
    if args.device == "cuda" and torch.cuda.is_available():
        rows += measure(torch.device("cuda"), layers)
    else:
        skipped = "no CUDA device" if args.device == "cuda" else "CPU run (--device cuda measures them)"
    if args.json:
        print(json.dumps({"rows": rows, "peaks": peaks(rows), "skipped": skipped,
                          "threads": torch.get_num_threads()}))
    else:
        print(table(rows, skipped))


if __name__ == "__main__":
    main()
