"""The one evaluation pass over the test split that every built-in metric reduces: negative
ELBO, its rate and distortion, and importance-sampled NLL per image, and one draw's
closed-form KL or codes."""

from __future__ import annotations

import sys
import time

import torch
from torch import Tensor
from tqdm import tqdm

from vaereg import collective
from vaereg.data import Dataset
from vaereg.metrics import EvaluationPass
from vaereg.model import VAE
from vaereg.objectives import importance_nll, kl_per_image, negative_elbo
from vaereg_harness.launch import distributed, threads


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
def evaluation_pass(model: VAE, data: Dataset, iw_samples: int, iw_chunk: int = 128, progress: bool = True, *,
             seed: int = 0) -> EvaluationPass:
    """One pass over ``data.test``: each batch is encoded once, and its posterior serves one
    draw (negative ELBO, and its rate and distortion: nelbo = R + D, Alemi et al. 2018, sec. 2;
    KL per dimension, or the codes of a point mass) and the importance-sampled NLL, drawn
    ``iw_chunk`` at a time through ``VAE.forward``. Images go ``images_per_pass`` at a time,
    so memory stays bounded whatever ``iw_samples`` is. Conditioned on labels, the NLL is
    -log p(x | y). A model without a density (``Combo.no_density``) gets none of these, and
    the reason.

    Pass p draws from the stream ``(seed, "evaluate", p)``. Under torchrun each rank scores
    its share of the passes and the per-image values are gathered in order, so the values
    equal those of one process with the same checkpoint and seed."""
    model.eval()
    no_density = model.combo.no_density
    device = next(model.parameters()).device
    began = time.perf_counter()
    step = images_per_pass(device, iw_chunk)
    test = data.test.to(device)
    labels = data.test_labels.to(device) if data.spec.classes else None
    latent = model.combo.latent
    nelbos, nlls, rates, distortions, indices, kls = [], [], [], [], [], []
    passes = range(0, test.shape[0], step)
    mine = passes[collective.my_share(len(passes))]
    for i in tqdm(mine, desc="evaluate", disable=not (progress and collective.rank() == 0),
                  file=sys.stderr, leave=False, unit="batch"):
        batch = data.batch(test[i:i + step], None if labels is None else labels[i:i + step], train=False)
        with distributed.seeded(seed, "evaluate", i):
            posterior = model.encode(batch)
            terms = model(batch, 1, posterior=posterior)
            if no_density is None:
                nelbos.append(negative_elbo(terms).double())
                rates.append(kl_per_image(terms).double())
                distortions.append(-terms.log_px[0].double())
                nlls.append(importance_nll(model, batch, iw_samples, iw_chunk, posterior).double())
        threads.tick()
        if terms.deterministic:
            indices.append(terms.z[0])
        elif terms.kl is not None:
            kls.append(terms.kl.flatten(1).double().sum(0))
    none = torch.empty(0, dtype=torch.float64, device=device)
    nelbo, nll, rate, distortion = (None,) * 4 if no_density else (
        gathered(values, none).cpu() for values in (nelbos, nlls, rates, distortions))
    seconds = time.perf_counter() - began
    # what the passes yielded, over every rank (a rank may have scored none)
    seen = collective.all_sum(torch.tensor([float(bool(indices)), float(bool(kls))], device=device)) > 0
    deterministic, any_kl = bool(seen[0]), bool(seen[1])
    codes = None
    if deterministic and latent.is_codes:
        codes = gathered(indices, torch.empty(0, *latent.shape, dtype=torch.long, device=device)).cpu()
    kl = None
    if any_kl:
        kl_sum = collective.all_sum(sum(kls) if kls else torch.zeros(latent.size, dtype=torch.float64, device=device))
        kl = (kl_sum / test.shape[0]).cpu()
    return EvaluationPass(nelbo=nelbo, nll=nll, iw_samples=1 if deterministic else iw_samples, kl=kl, codes=codes,
                          seconds=seconds, no_density=no_density, rate=rate, distortion=distortion)
