"""Drawing samples from a model: the one draw the metrics of a run share, and the grids."""

from __future__ import annotations

import torch

from vaereg import collective
from vaereg.context import Context
from vaereg.data import Dataset
from vaereg.model import VAE
from vaereg_harness.launch import distributed


def sample_context(data: Dataset, n: int, device: torch.device, per_class: int | None = None) -> Context:
    """A context for ``n`` samples: under labels, ``per_class`` of each class in turn (or the
    classes cycling); unconditional otherwise."""
    if not data.spec.classes:
        return data.context(None)
    labels = torch.arange(n, device=device)
    labels = labels // per_class % data.spec.classes if per_class else labels % data.spec.classes
    return data.context(labels)


@torch.no_grad()
def draw_samples(model: VAE, data: Dataset, n: int, per_class: int | None = None, *, mean: bool = False,
                 seed: int = 0, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` samples on the CPU (sampled pixels, or the likelihood's mean images) and their
    labels (None for an unconditional model). Chunk c draws from the stream
    ``(seed, "sample", c)``: pixels and means of the same seed share their latents, and under
    torchrun each rank draws its share of the chunks and every rank gathers them all."""
    device = next(model.parameters()).device
    context = sample_context(data, n, device, per_class)
    starts = range(0, n, chunk)
    mine = []
    for i in starts[collective.my_share(len(starts))]:
        with distributed.seeded(seed, "sample", i // chunk):
            mine.append(model.sample(min(chunk, n - i), context.select(slice(i, i + chunk)), mean=mean).cpu())
    spec = data.spec
    samples = collective.gather_rows(torch.cat(mine) if mine else torch.empty(0, spec.channels, spec.height,
                                                                               spec.width))
    return samples, None if context.label is None else context.label.cpu()
