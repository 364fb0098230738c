"""What the run cost: training and evaluation time, throughput and peak GPU memory."""

from __future__ import annotations

import json

import torch

from vaereg.metrics import Column, Metric
from vaereg_harness.metrics.scoring import RunScoring

SPEED_SAMPLES = 64  # sampling speed is timed on the shared draw, at least this many images


class Timings(Metric):
    """Seconds and images per second of training (per stage too), evaluation and sampling, and
    the peak GPU memory of the run."""

    columns = (
        Column("train_seconds", float, "s", False, "training, every stage", heading="train s", format=".1f"),
        Column("train_images_per_s", float, "images/s", True, "training throughput", heading="img/s", format=".0f"),
        Column("stage_seconds", str, "s", None, "JSON: stage -> seconds", shown=False),
        Column("eval_seconds", float, "s", False, "the evaluation pass over the test images", heading="eval s",
               format=".1f"),
        Column("sample_images_per_s", float, "images/s", True, "the shared draw of samples", shown=False),
        Column("peak_gpu_memory_mb", float, "MiB", False, "peak GPU memory of training and evaluation (CUDA only)",
               shown=False),
    )

    def sample_count(self, scoring: RunScoring) -> int:
        return SPEED_SAMPLES

    def compute(self, scoring: RunScoring) -> dict[str, int | float | str | None]:
        reports = getattr(scoring, "reports", [])  # none outside a harness run (the conformance kit)
        seconds = sum(r.seconds for r in reports)
        scoring.samples(SPEED_SAMPLES)  # the shared draw, timed
        cuda = scoring.device.type == "cuda"
        return {
            "train_seconds": seconds,
            "train_images_per_s": sum(r.images for r in reports) / seconds if seconds else None,
            "stage_seconds": json.dumps({r.stage: r.seconds for r in reports}),
            "eval_seconds": scoring.evaluation.seconds,
            "sample_images_per_s": scoring.sample_count / scoring.sample_seconds,
            "peak_gpu_memory_mb": torch.cuda.max_memory_allocated(scoring.device) / 2**20 if cuda else None,
        }
