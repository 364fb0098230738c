"""Evaluation on the test split: negative ELBO and importance-sampled NLL per image."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from vaereg.codes import codebook_stats
from vaereg.model import VAE
from vaereg.objectives import importance_nll, nelbo
from vaereg_harness.data import Dataset


@dataclass
class Evaluation:
    nelbo_nats: float
    nll_nats: float
    nll_bpd: float
    iw_samples: int
    seconds: float
    sample_images_per_s: float
    codebook_perplexity: float | None = None
    codebook_usage: float | None = None


@torch.no_grad()
def evaluate(
    model: VAE, data: Dataset, iw_samples: int, iw_chunk: int = 128, progress: bool = True,
    sample_images: int = 64,
) -> Evaluation:
    """Means over the test split. Images go ``max(1, 8192 // iw_chunk)`` at a time with
    ``iw_chunk`` samples each, so memory stays bounded whatever ``iw_samples`` is. Sampling
    speed is timed on ``sample_images`` draws; a discrete latent's code use on the test split."""
    model.eval()
    device = next(model.parameters()).device
    began = time.perf_counter()
    batch = max(1, 8192 // iw_chunk)
    test = data.test.to(device)
    nelbos, nlls, codes = [], [], []
    discrete = model.combo.latent.kind == "discrete"
    for i in tqdm(range(0, test.shape[0], batch), desc="evaluate", disable=not progress,
                  file=sys.stderr, leave=False, unit="batch"):
        x = data.to_model(test[i:i + batch], train=False)
        nelbos.append(nelbo(model, x))
        nlls.append(importance_nll(model, x, iw_samples, iw_chunk))
        if discrete:
            codes.append(model.encoder(x).rsample(1)[0])
    nll = torch.cat(nlls).mean().item()
    used = 1 if model.encoder(data.to_model(test[:1], train=False)).deterministic else iw_samples
    seconds = time.perf_counter() - began
    stats = codebook_stats(torch.cat(codes), model.combo.latent.codes) if discrete else {}
    began = time.perf_counter()
    model.sample(sample_images)
    return Evaluation(
        nelbo_nats=torch.cat(nelbos).mean().item(),
        nll_nats=nll,
        nll_bpd=data.spec.bits_per_dim(nll),
        iw_samples=used,
        seconds=seconds,
        sample_images_per_s=sample_images / (time.perf_counter() - began),
        codebook_perplexity=stats["perplexity"].item() if stats else None,
        codebook_usage=stats["usage"].item() if stats else None,
    )
