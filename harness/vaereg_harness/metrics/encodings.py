"""Posterior means of stored images: the deterministic codes that representation and
disentanglement metrics score."""

from __future__ import annotations

import torch
from torch import Tensor

from vaereg.data import Dataset
from vaereg.model import VAE


@torch.no_grad()
def posterior_means(model: VAE, data: Dataset, stored: Tensor, batch_size: int = 256, *,
                    labels: Tensor | None = None, train: bool = False) -> Tensor:
    """The posterior mean (``Posterior.mode()``) of each of the stored images ``stored``
    ``[N, C, H, W]``, flattened: float64 ``[N, latent.size]`` on the CPU. Encoded in eval mode
    on the model's device, ``batch_size`` images at a time; ``labels`` ``[N]`` condition a model
    trained on them, and ``train`` reads the images as the train split's (``Dataset.to_model``:
    a binarized data set's are binarized, from torch's stream). Raises NotImplementedError for a
    posterior without a mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        means = []
        for i in range(0, stored.shape[0], batch_size):
            rows = None if labels is None else labels[i:i + batch_size].to(device)
            batch = data.batch(stored[i:i + batch_size].to(device), rows, train=train)
            means.append(model.encode(batch).mode().flatten(1).double().cpu())
    finally:
        model.train(was_training)
    if not means:
        return torch.empty(0, model.combo.latent.size, dtype=torch.float64)
    return torch.cat(means)
