"""Evaluation on the test split: negative ELBO and importance-sampled NLL per image."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from vaereg import collective
from vaereg.codes import codebook_stats
from vaereg.model import VAE
from vaereg.objectives import importance_nll, kl_per_level, negative_elbo
from vaereg.specs import LatentSpec
from vaereg_harness import distributed, threads
from vaereg_harness.data import Dataset


@dataclass
class Evaluation:
    nelbo_nats: float
    nll_nats: float
    nll_bpd: float
    iw_samples: int
    seconds: float
    codebook_perplexity: float | None = None
    codebook_usage: float | None = None
    kl_per_level: list[float] | None = None
    active_units: int | None = None


ACTIVE_KL = 0.01  # nats: a latent dimension whose mean KL exceeds this is active


def latent_usage(latent: LatentSpec, kl: Tensor) -> tuple[list[float], int]:
    """Mean KL per level (z_1 first) and the number of active dimensions, from the mean KL per
    dimension ``[size]`` over the test split."""
    return kl_per_level(latent, kl[None])[0].tolist(), int((kl > ACTIVE_KL).sum().item())


def code_usage(latent: LatentSpec, indices: Tensor) -> tuple[float, float]:
    """Codebook perplexity and usage, averaged over the code maps of a hierarchy."""
    maps = latent.split(indices)
    stats = [codebook_stats(m, level.codes) for m, level in zip(maps, latent.as_levels(), strict=True)]
    return (sum(s["perplexity"].item() for s in stats) / len(stats),
            sum(s["usage"].item() for s in stats) / len(stats))


def images_per_pass(device: torch.device, iw_chunk: int) -> int:
    """Images scored together, each with ``iw_chunk`` samples: about 8192 rows per pass on a GPU,
    1024 on a CPU, where larger passes fall out of cache and run about half as fast
    (`benchmarks/test_evaluation.py` measures it)."""
    rows = 8192 if device.type == "cuda" else 1024
    return max(1, rows // iw_chunk)


def gathered(values: list[Tensor], empty: Tensor) -> Tensor:
    """This rank's per-image ``values``, concatenated with every other rank's in rank order."""
    return collective.gather_rows(torch.cat(values) if values else empty)


@torch.no_grad()
def evaluate(model: VAE, data: Dataset, iw_samples: int, iw_chunk: int = 128, progress: bool = True, *,
             seed: int = 0) -> Evaluation:
    """Means over the test split. Images go ``images_per_pass`` at a time with ``iw_chunk``
    samples each, so memory stays bounded whatever ``iw_samples`` is. One draw per image also
    gives code use for discrete latents, and KL per level and active units for latents with a
    closed-form KL. Conditioned on labels, the NLL is -log p(x | y).

    Pass p draws from the stream ``(seed, "evaluate", p)``. Under torchrun each rank scores
    its share of the passes and the per-image values are gathered in order, so the numbers
    equal those of one process with the same checkpoint and seed."""
    model.eval()
    device = next(model.parameters()).device
    began = time.perf_counter()
    step = images_per_pass(device, iw_chunk)
    test = data.test.to(device)
    labels = data.test_labels.to(device) if data.spec.classes else None
    latent = model.combo.latent
    nelbos, nlls, indices, kls = [], [], [], []
    passes = range(0, test.shape[0], step)
    mine = passes[collective.my_share(len(passes))]
    for i in tqdm(mine, desc="evaluate", disable=not (progress and collective.rank() == 0),
                  file=sys.stderr, leave=False, unit="batch"):
        batch = data.batch(test[i:i + step], None if labels is None else labels[i:i + step], train=False)
        with distributed.seeded(seed, "evaluate", i):
            posterior = model.encode(batch)
            terms = model.terms(batch, posterior, 1)
            nelbos.append(negative_elbo(terms).double())
            nlls.append(importance_nll(model, batch, iw_samples, iw_chunk, posterior).double())
        threads.tick()
        if terms.deterministic:
            indices.append(terms.z[0])
        elif terms.kl is not None:
            kls.append(terms.kl.flatten(1).double().sum(0))
    none = torch.empty(0, dtype=torch.float64, device=device)
    nll = gathered(nlls, none).mean().item()
    seconds = time.perf_counter() - began
    # what the passes yielded, over every rank (a rank may have scored none)
    seen = collective.all_sum(torch.tensor([float(bool(indices)), float(bool(kls))], device=device)) > 0
    deterministic, any_kl = bool(seen[0]), bool(seen[1])
    if deterministic and latent.is_codes:
        codes = gathered(indices, torch.empty(0, *latent.shape, dtype=torch.long, device=device))
        perplexity, usage = code_usage(latent, codes)
    else:
        perplexity, usage = None, None
    kl_levels, active = None, None
    if any_kl:
        kl_sum = collective.all_sum(sum(kls) if kls else torch.zeros(latent.size, dtype=torch.float64, device=device))
        kl_levels, active = latent_usage(latent, kl_sum / test.shape[0])
    return Evaluation(
        nelbo_nats=gathered(nelbos, none).mean().item(),
        nll_nats=nll,
        nll_bpd=data.spec.bits_per_dim(nll),
        iw_samples=1 if deterministic else iw_samples,
        seconds=seconds,
        codebook_perplexity=perplexity,
        codebook_usage=usage,
        kl_per_level=kl_levels,
        active_units=active,
    )
