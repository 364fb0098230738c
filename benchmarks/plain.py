"""The plain reference for a family: its modules built through vaereg's core (``vaereg.combo.resolve``,
``vaereg.model.VAE``, the objective's ``steps``), trained by the loop one would write by hand,
in a fresh process that never imports ``vaereg_harness`` (its data, logger and metric plugins are
disabled; the script checks). Every stage the combo declares runs as the harness runs it: the
autoencoder against the objective, one fused Adam per step, then a prior trained by gradient on
the frozen encoder's latents, or one that fits itself. Then, optionally, the IS NLL of the test
images through ``vaereg.objectives.importance_nll``, and the FLOPs of one step and of the NLL
counted by ``torch.utils.flop_counter``.

    python benchmarks/plain.py --combo gaussian --data DIR [--epochs 1] [--batch 64] [--threads N]
                               [--nll K] [--flops]

``DIR`` holds MNIST-layout IDX files (``benchmarks/utilisation.py`` writes synthetic ones). Prints
one JSON line: seconds per stage, images per stage, NLL seconds, peak RSS (MB) after training and
at the end, and the FLOP counts."""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (a process's first optimiser imports it: 3.5 s here; the harness does at start-up)
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from vaereg.combo import resolve
from vaereg.data import Dataset
from vaereg.model import VAE
from vaereg.objectives import Objective, Step, build_objective, importance_nll
from vaereg.probe import probe
from vaereg.registry import DISABLE_ENV
from vaereg.specs import DataSpec

HARNESS_PLUGINS = ("datasets", "loggers", "metrics")  # the harness's own entry points, never loaded here
LATENT_CHUNK = 512  # training images encoded at a time for a prior trained after the autoencoder
ROWS_PER_PASS = 1024  # IS NLL rows (images x draws) per pass on a CPU, as the harness scores them


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped): big-endian dimensions after a 4-byte magic whose last byte is the rank."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    rank = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(rank))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)


def load(root: Path) -> Dataset:
    """28x28 images with 256 intensities from ``root``'s MNIST-named IDX files, unconditioned."""
    train, test = (torch.from_numpy(read_idx(root / f"{split}-images-idx3-ubyte.gz").copy()).unsqueeze(1)
                   for split in ("train", "t10k"))
    return Dataset(DataSpec("mnist", 1, train.shape[2], train.shape[3], 256), train, test)


def update(steps: list[Step], optimizers: list[torch.optim.Optimizer], out, progress: float) -> None:
    """Every step's gradient from the same forward output, then every optimiser moves."""
    last = len(steps) - 1
    for s, (step, optimizer) in enumerate(zip(steps, optimizers, strict=True)):
        loss, _ = step.loss(out, progress)
        optimizer.zero_grad(set_to_none=True)
        if last == 0:
            loss.backward()
        else:
            loss.backward(inputs=step.parameters, retain_graph=s < last)
    for optimizer in optimizers:
        optimizer.step()


def only_trained(model: VAE, objective: Objective, trained: list[nn.Parameter]) -> None:
    for p in [*model.parameters(), *objective.parameters()]:
        p.requires_grad_(False)
    for p in trained:
        p.requires_grad_(True)


def adams(steps: list[Step], lr: float) -> list[torch.optim.Optimizer]:
    return [torch.optim.Adam(s.parameters, lr=s.lr or lr, betas=s.betas, fused=True) for s in steps]


def train_autoencoder(model: VAE, objective: Objective, data: Dataset, epochs: int, batch: int, lr: float) -> None:
    n = data.train.shape[0]
    objective.training_images = n
    steps = objective.steps(model, model.stage_parameters(prior=False))
    only_trained(model, objective, [p for step in steps for p in step.parameters])
    optimizers = adams(steps, lr)
    model.train()
    batches = math.ceil(n / batch)
    for epoch in range(epochs):
        for i, idx in enumerate(torch.randperm(n).split(batch)):
            out = model(data.batch(data.train[idx], None, train=True), objective.draws)
            update(steps, optimizers, out, (epoch * batches + i) / (epochs * batches))


@torch.no_grad()
def latents(model: VAE, data: Dataset) -> Tensor:
    """The frozen encoder's latents of the training images, as the prior asks for them."""
    model.eval()
    wanted = model.prior.prior_latents
    chunks = []
    for x in data.train.split(LATENT_CHUNK):
        posterior = model.encode(data.batch(x, None, train=False))
        chunks.append(posterior.mode() if wanted.source == "mode" else posterior.rsample(wanted.draws).flatten(0, 1))
    return torch.cat(chunks)


def prior_loss(model: VAE, data: Dataset, z: Tensor) -> Tensor:
    return -model.prior.log_prob(z, data.context(None)).mean()


def train_prior(model: VAE, objective: Objective, data: Dataset, epochs: int, batch: int, lr: float) -> int:
    """The prior stage (gradient or fit); returns the latent rows it trained on."""
    z = latents(model, data)
    model.prior.train()
    if model.combo.schedule == "fit":
        with torch.no_grad():
            model.prior.fit(z, data.context(None))
    else:
        trained = model.stage_parameters(prior=True)
        only_trained(model, objective, trained)
        optimizer = torch.optim.Adam(trained, lr=lr, fused=True)
        for _ in range(epochs):
            for idx in torch.randperm(z.shape[0]).split(batch):
                loss = prior_loss(model, data, z[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    model.prior_trained = True
    return z.shape[0]


@torch.no_grad()
def score_nll(model: VAE, data: Dataset, k: int, chunk: int = 128) -> float:
    """Mean IS NLL of the test images, each batch encoded once, ``chunk`` draws per forward."""
    model.eval()
    total = 0.0
    for x in data.test.split(max(1, ROWS_PER_PASS // chunk)):
        batch = data.batch(x, None, train=False)
        total += float(importance_nll(model, batch, k, chunk, model.encode(batch)).double().sum())
    return total / data.test.shape[0]


class RegistryCount(TorchDispatchMode):
    """``FlopCounterMode``'s count (its ``flop_registry``) without its module tracker, whose
    backward hooks fail on NVAE's no-grad IS NLL ("Expected gradient function to be set")."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func._overloadpacket in flop_registry:
            self.total += flop_registry[func._overloadpacket](*args, **kwargs, out_val=out)
        return out


def draws_per_image(model: VAE, k: int) -> int:
    """The IS NLL's draws per image: ``k``, or 1 for a point mass (``importance_nll``)."""
    return 1 if model.combo.parts["encoder"].cls.posterior.deterministic else k


def counted(fn) -> int:
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()
    except AssertionError:
        with RegistryCount() as registry_count:
            fn()
        return registry_count.total


def count_flops(model: VAE, objective: Objective, data: Dataset, batch: int, k: int | None) -> dict[str, float]:
    """FLOPs per image of one autoencoder step (forward, every step's loss and backward), per
    latent row of one prior step, and per image x draw of the IS NLL (the encoder included)."""
    x = data.train[:batch]
    steps = objective.steps(model, model.stage_parameters(prior=False))
    only_trained(model, objective, [p for step in steps for p in step.parameters])
    model.train()

    def step() -> None:
        out = model(data.batch(x, None, train=True), objective.draws)
        last = len(steps) - 1
        for s, one in enumerate(steps):
            loss, _ = one.loss(out, 0.5)
            loss.backward(inputs=one.parameters, retain_graph=s < last)

    result = {"train": counted(step) / batch}
    if model.combo.schedule == "gradient":
        z = latents(model, data)[:batch]
        only_trained(model, objective, model.stage_parameters(prior=True))
        model.prior.train()
        result["prior"] = counted(lambda: prior_loss(model, data, z).backward()) / z.shape[0]
    if k:
        images = Dataset(data.spec, x, data.test[:2])
        result["nll"] = counted(lambda: score_nll(model, images, k)) / (2 * draws_per_image(model, k))
    model.zero_grad(set_to_none=True)
    return result


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--combo", required=True)
    parser.add_argument("--data", type=Path, required=True, help="a folder of MNIST-named IDX files")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads [torch's default]")
    parser.add_argument("--nll", type=int, default=None, metavar="K", help="then score the IS NLL with K draws")
    parser.add_argument("--flops", action="store_true", help="then count the FLOPs of a step and of the NLL")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of the training")
    args = parser.parse_args()
    os.environ[DISABLE_ENV] = ",".join(filter(None, [os.environ.get(DISABLE_ENV, ""), *HARNESS_PLUGINS]))
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load(args.data)
    torch.manual_seed(0)
    combo = resolve(args.combo, data.spec, {"objective": {}})
    model, objective = VAE(combo), build_objective(combo)
    probe(model, data)  # as the harness builds a model: checked on two images, the random stream untouched
    result: dict = {"threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters())}
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if args.profile else None
    if profiler:
        profiler.start()
    began = time.perf_counter()
    train_autoencoder(model, objective, data, args.epochs, args.batch, args.lr)
    stages = {"autoencoder": {"seconds": time.perf_counter() - began, "images": args.epochs * data.train.shape[0]}}
    if combo.schedule != "joint":
        began = time.perf_counter()
        rows = train_prior(model, objective, data, args.epochs, args.batch, args.lr)
        stages["prior"] = {"seconds": time.perf_counter() - began,  # a fitted prior counts no images, as in the harness
                           "images": rows * args.epochs if combo.schedule == "gradient" else 0}
    result.update(stages=stages, seconds=sum(s["seconds"] for s in stages.values()), train_peak_mb=peak_mb())
    if profiler:
        profiler.stop()
        result["profile"] = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    if args.nll and combo.no_density is None:
        began = time.perf_counter()
        result["nll"] = score_nll(model, data, args.nll)
        result.update(nll_seconds=time.perf_counter() - began, nll_images=data.test.shape[0],
                      nll_draws=draws_per_image(model, args.nll))
    result["peak_mb"] = peak_mb()
    if args.flops:
        k = args.nll if combo.no_density is None else None
        result["flops"] = count_flops(model, objective, data, args.batch, k)
    if any(name.startswith("vaereg_harness") for name in sys.modules):
        raise SystemExit("plain.py imported vaereg_harness; the plain loop must not")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
