"""Pictures of a trained model, for the run folder, the report and notebooks: latent traversals
(Higgins et al. 2017, fig. 7), interpolations between test images' posterior means, test
reconstructions beside their inputs, and on a data set with ground-truth factors a heatmap of the
mutual information between each latent dimension and each factor (Chen et al. 2018, fig. 4).

The contract: every picture is a uint8 array ``[H, W, C]``, ready for ``PIL.Image.fromarray``
(``write_png``): a grid of images is laid out by ``tile`` (``C`` the data's channels, each cell
scaled up to at least 32 pixels, 1-pixel black borders), the heatmap is RGB. A picture a model
cannot have is None, and its function's docstring says why. Each picture is drawn on its own
random stream ``(seed, "pictures", name)``, so it depends on the seed and on nothing run before."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from vaereg.context import Context
from vaereg.data import Dataset
from vaereg.model import VAE, Batch
from vaereg.parts import Posterior
from vaereg_harness.launch.distributed import seeded
from vaereg_harness.metrics.disentanglement import mutual_information_matrix
from vaereg_harness.metrics.encodings import posterior_means
from vaereg_harness.store.images import tile

DPI = 100  # the heatmap's pixels per inch


def has_vector_means(model: VAE) -> bool:
    """Whether the model's latent is one continuous vector whose posterior has a mean (``mode``):
    what traversals, interpolations and the factor heatmap need. Code maps and hierarchies are
    not one vector, and a posterior without a closed-form mode (a flow's) has no mean."""
    latent = model.combo.latent
    posterior = model.combo.parts["encoder"].cls.posterior
    return latent.kind == "continuous" and len(latent.shape) == 1 and posterior.mode is not Posterior.mode


def decode(model: VAE, z: Tensor, context: Context) -> Tensor:
    """Images ``[N, C, H, W]`` of latents ``z`` ``[N, *latent.shape]`` drawn as a prior sample is
    (``VAE.sample``): the likelihood's mean image, or sampled pixels where it has no mean."""
    params = model.decoder(model.encoder.embed(z, context), context)
    means = model.likelihood.mean(params, context)
    return means if means is not None else model.likelihood.sample(params, context)


def _test_batch(model: VAE, data: Dataset, index: Tensor) -> Batch:
    device = next(model.parameters()).device
    labels = None if data.test_labels is None else data.test_labels[index].to(device)
    return data.batch(data.test[index].to(device), labels, train=False)


def ranked_dimensions(model: VAE, posterior: Posterior) -> Tensor:
    """The latent dimensions, most active first, over the images of ``posterior``: by the mean
    closed-form KL(q(z_d | x) || p(z_d)) where the posterior and the prior have one, else by the
    variance of the posterior means (ties: the lower index first)."""
    prior = model.active_prior
    prior.prepare()
    kl = model.combo.kl(posterior, prior)
    activity = kl.mean(0) if kl is not None else posterior.mode().var(0, correction=0)
    return torch.sort(activity, descending=True, stable=True).indices


@torch.no_grad()
def traversals(model: VAE, data: Dataset, dims: int = 8, steps: int = 9, span: float = 3.0, seed: int = 0,
               images: int = 256) -> np.ndarray | None:
    """Latent traversals (Higgins et al. 2017, fig. 7): one row per latent dimension, for the
    ``dims`` most active dimensions (``ranked_dimensions`` over the first ``images`` test images:
    mean closed-form KL, else variance of the posterior means), most active on top. Each row
    starts from the posterior mean of the first test image and sets its dimension to ``steps``
    evenly spaced values from ``-span`` to ``span`` (units of the standard normal prior's standard
    deviation, in the latent's own coordinates: on a sphere or a Poincare ball the points leave
    the manifold), decoded as a prior sample is (``decode``), under the first image's context.

    None for a latent that is not one continuous vector with posterior means (``has_vector_means``:
    a code map or a hierarchy has no single vector to move along)."""
    if not has_vector_means(model) or data.test.shape[0] == 0:
        return None
    model.eval()
    batch = _test_batch(model, data, torch.arange(min(images, data.test.shape[0])))
    posterior = model.encode(batch)
    chosen = ranked_dimensions(model, posterior)[:dims]
    base = posterior.mode()[0]
    values = torch.linspace(-span, span, steps, device=base.device, dtype=base.dtype)
    z = base.repeat(len(chosen), steps, 1)  # [rows, steps, D]
    z[torch.arange(len(chosen), device=chosen.device), :, chosen] = values
    context = batch.context.select(torch.zeros(len(chosen) * steps, dtype=torch.long, device=base.device))
    with seeded(seed, "pictures", "traversals"):
        return tile(decode(model, z.flatten(0, 1), context), cols=steps)


@torch.no_grad()
def interpolations(model: VAE, data: Dataset, pairs: int = 4, steps: int = 9, seed: int = 0) -> np.ndarray | None:
    """Linear interpolations between the posterior means of ``pairs`` pairs of test images, drawn
    at random (without replacement) on the stream ``(seed, "pictures", "interpolations")``: one
    row per pair, the first original, ``steps`` decodes from its mean to the other's (both ends
    included, ``decode``, under the first image's context), then the other original.

    None for a latent that is not one continuous vector with posterior means (``has_vector_means``)
    or with fewer than two test images."""
    count = data.test.shape[0]
    if not has_vector_means(model) or count < 2:
        return None
    model.eval()
    pairs = min(pairs, count // 2)
    with seeded(seed, "pictures", "interpolations"):
        chosen = torch.randperm(count)[:2 * pairs]
        batch = _test_batch(model, data, chosen)
        means = model.encode(batch).mode()
        start, end = means[:pairs], means[pairs:]
        t = torch.linspace(0, 1, steps, device=means.device, dtype=means.dtype)[None, :, None]
        z = (1 - t) * start[:, None] + t * end[:, None]  # [pairs, steps, D]; exactly the means at t = 0, 1
        context = batch.context.select(torch.arange(pairs, device=means.device).repeat_interleave(steps))
        decoded = decode(model, z.flatten(0, 1), context).view(pairs, steps, *batch.x.shape[1:]).cpu()
    x = batch.x.cpu()
    rows = torch.cat([x[:pairs, None], decoded, x[pairs:, None]], dim=1)
    return tile(rows.flatten(0, 1), cols=steps + 2)


@torch.no_grad()
def reconstructions(model: VAE, data: Dataset, n: int = 16, seed: int = 0) -> np.ndarray | None:
    """The first ``n`` test images (top row) above their reconstructions: one posterior draw per
    image on the stream ``(seed, "pictures", "reconstructions")``, decoded to the likelihood's
    mean image (sampled pixels where it has none). Any latent. None without test images."""
    n = min(n, data.test.shape[0])
    if n == 0:
        return None
    model.eval()
    batch = _test_batch(model, data, torch.arange(n))
    with seeded(seed, "pictures", "reconstructions"):
        posterior = model.encode(batch)
        params = model.decoder(posterior.decoder_input(posterior.rsample(1)), batch.context)
        means = model.likelihood.mean(params, batch.context)
        shown = means if means is not None else model.likelihood.sample(params, batch.context)
    return tile(torch.cat([batch.x.cpu(), shown.cpu()]), cols=n)


def factor_mi_matrix(model: VAE, data: Dataset, seed: int = 0, bins: int = 20) -> np.ndarray | None:
    """The mutual information in nats ``[D, F]`` between each latent dimension's posterior mean
    and each ground-truth factor, over every image of the data set (train split, then test;
    ``mutual_information_matrix``, ``bins`` equal-width bins per dimension, as MIG uses). A
    binarized train split is binarized on the stream ``(seed, "pictures", "factor-mi")``.

    None without factors, for a latent that is not one continuous vector with posterior means
    (``has_vector_means``), or with fewer than 2 latent dimensions (the estimator's minimum)."""
    if data.factors is None or not has_vector_means(model) or model.combo.latent.size < 2:
        return None
    labels = (None, None) if not data.spec.classes else (data.train_labels, data.test_labels)
    with seeded(seed, "pictures", "factor-mi"):
        train = posterior_means(model, data, data.train, labels=labels[0], train=data.binarize)
    test = posterior_means(model, data, data.test, labels=labels[1])
    codes = torch.cat([train, test]).numpy()
    factors = torch.cat([data.factors.train, data.factors.test]).numpy()
    return mutual_information_matrix(codes, factors, bins)


def heatmap_size(dims: int, factors: int) -> tuple[float, float]:
    """The heatmap's (width, height) in inches for ``dims`` latent dimensions and ``factors`` factors."""
    return 2.5 + 0.8 * factors, 1.5 + 0.3 * dims


def heatmap(matrix: np.ndarray, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """The MI matrix ``[D, F]`` drawn as an RGB heatmap ``[H, W, 3]`` (``heatmap_size`` at ``DPI``):
    one row per latent dimension (``z0``, ``z1``, ...), one column per factor, each cell's value
    written in it."""
    dims, count = matrix.shape
    figure = Figure(figsize=heatmap_size(dims, count), dpi=DPI, layout="constrained")
    canvas = FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    shown = ax.imshow(matrix, cmap="viridis", vmin=0.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(count), [name.replace("$", r"\$") for name in names], rotation=30, ha="right")
    ax.set_yticks(range(dims), [f"z{d}" for d in range(dims)])
    ax.set_xlabel("factor")
    ax.set_ylabel("latent dimension")
    ax.set_title("I(z_d; v_k), nats", fontsize=9)
    top = float(matrix.max()) if matrix.size else 0.0
    for (d, k), value in np.ndenumerate(matrix):
        ax.text(k, d, f"{value:.2f}", ha="center", va="center", fontsize=6,
                color="black" if value > top / 2 else "white")
    figure.colorbar(shown, ax=ax, label="nats")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def factor_mi(model: VAE, data: Dataset, seed: int = 0, bins: int = 20) -> np.ndarray | None:
    """``factor_mi_matrix`` drawn as a ``heatmap`` labelled with the factors' names; None where
    the matrix is None."""
    matrix = factor_mi_matrix(model, data, seed, bins)
    return None if matrix is None else heatmap(matrix, data.factors.names)


PICTURES = ("traversals", "interpolations", "reconstructions", "factor_mi")  # the keys of ``pictures``


def pictures(model: VAE, data: Dataset, seed: int = 0) -> dict[str, np.ndarray | None]:
    """Every picture of a trained model with its defaults, by name (``PICTURES``): None where the
    model or the data set cannot have it. The model is left in eval mode."""
    return {"traversals": traversals(model, data, seed=seed), "interpolations": interpolations(model, data, seed=seed),
            "reconstructions": reconstructions(model, data, seed=seed), "factor_mi": factor_mi(model, data, seed)}
