"""The harness side of the fresh-process comparison: ``vaereg_harness.api.train_model`` (or
the evaluation's IS NLL) on the embedded digits, in a process of its own, timed around that
call alone (checkpoints and metrics log included), with the harness's own thread policy unless
``--threads``.

    python benchmarks/harness.py --combo gaussian-mlp --epochs 5 --out DIR [--threads N]
    python benchmarks/harness.py --combo gaussian-mlp --nll 1000 --out DIR [--device cuda]

prints one JSON line like ``bare.py``'s."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vaereg_harness.api import RunConfig, create_model, load_data, train_model
from vaereg_harness.metrics.passes import evaluation_pass
from vaereg_harness.run.config import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--combo", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads [the harness's policy]")
    parser.add_argument("--nll", type=int, default=None, metavar="K", help="score the IS NLL with K samples instead")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    data = load_data("digits")
    config = RunConfig(train=TrainConfig(epochs=args.epochs, batch_size=args.batch, device=args.device,
                                         threads=args.threads))
    model = create_model(args.combo, data, config=config)
    began = time.perf_counter()
    if args.nll:
        nll = evaluation_pass(model, data, args.nll, 128, progress=False).nll_nats
        result = {"nll": nll, "images": data.test.shape[0]}
    else:
        train_model(model, data, config, args.out, progress=False)
        result = {"images": args.epochs * data.train.shape[0]}
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, **result, "parameters": sum(p.numel() for p in model.parameters()),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
