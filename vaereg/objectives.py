"""The objective contract, and the reductions of ``Terms`` every objective and the evaluation share.

An objective turns what ``VAE.forward`` returns (``Terms``: the log-densities of k draws per
image, the closed-form KL where the pair has one, the posterior and the batch) into a loss and
detached stats. It never touches a part, and a part never touches it. The reported negative ELBO
and NLL are the model's own (``negative_elbo``, ``importance_nll``), whatever objective trained
it.

A custom training loop needs only this module and the model::

    objective = build_objective(model.combo)
    terms = model(batch, objective.draws)
    loss, stats = objective.loss(terms, progress)      # progress: fraction of training done
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from vaereg.model import VAE, Batch, Terms
from vaereg.parts import Likelihood, NoOptions, Posterior
from vaereg.specs import LATENT_KINDS, DataSpec, LatentSpec

#: ``loss(terms, progress) -> (loss, stats)``: a scalar to minimise and detached scalar stats.
LossFn = Callable[[Terms, float], tuple[Tensor, dict[str, Tensor]]]


@dataclass
class Step:
    """One optimiser of an objective: the parameters it owns and the loss it minimises. Every
    step's gradients are taken from the same forward pass before any step updates its
    parameters. ``lr`` None: the run's learning rate; ``betas``: Adam's."""

    name: str
    parameters: list[nn.Parameter]
    loss: LossFn
    lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)


class Objective(nn.Module):
    """How a model is trained. Built from ``(data, latent, config, closed_form_kl)``, where
    ``closed_form_kl`` says whether the autoencoder trains with a closed-form KL per latent
    dimension (``Terms.kl`` is not None).

    Override ``loss``. An objective that owns modules (a discriminator) holds them as
    submodules and returns one ``Step`` per optimiser from ``steps``; the first step's stats
    must hold ``loss``. Add ``terms.aux`` (the encoder's training-only loss: VQ commitment,
    NVAE's spectral regulariser) to the model's loss."""

    Config: ClassVar[type] = NoOptions
    #: Latent kinds this objective can train.
    latent_kinds: ClassVar[frozenset[str]] = LATENT_KINDS
    #: The number of images it trains on, set by the trainer before the first step (None until
    #: then): for estimators weighted by the data set's size (beta-TCVAE's q(z)).
    training_images: int | None = None

    def __init__(self, data: DataSpec, latent: LatentSpec, config: object, closed_form_kl: bool):
        super().__init__()
        self.data, self.latent, self.config, self.closed_form_kl = data, latent, config, closed_form_kl

    #: Draws per image the forward pass takes for this objective (IWAE: k).
    @property
    def draws(self) -> int:
        return 1

    @classmethod
    def mismatch(cls, latent: LatentSpec, config: object, closed_form_kl: bool) -> str | None:
        """Why this objective cannot train a model with ``latent`` (and a closed-form KL or
        not), or None when it can."""
        if latent.kind not in cls.latent_kinds:
            return f"needs a {'/'.join(sorted(cls.latent_kinds))} latent, got a {latent.describe()}"
        return None

    @classmethod
    def encoder_mismatch(cls, posterior: type[Posterior]) -> str | None:
        """Why this objective cannot train an encoder whose posterior is of type ``posterior``
        (one that reads a diagonal Gaussian's parameters), or None when it can. Checked when the
        combo is resolved."""
        return None

    @classmethod
    def likelihood_mismatch(cls, likelihood: type[Likelihood]) -> str | None:
        """Why this objective cannot train a model with a likelihood of type ``likelihood`` (one
        that reads the likelihood's mean image), or None when it can. Checked when the combo is
        resolved."""
        return None

    @classmethod
    def training_mismatch(cls, config: object, batch_size: int, training_images: int) -> str | None:
        """Why this objective cannot train with batches of ``batch_size`` images on a training
        split of ``training_images``, or None when it can. Checked when a run is planned, before
        anything is written."""
        return None

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        """The model's loss (a scalar) and detached per-batch stats (means over images), given
        the terms of ``draws`` draws per image and the fraction of training done."""
        raise NotImplementedError

    def steps(self, model: VAE, trained: list[nn.Parameter]) -> list[Step]:
        """The optimisers: by default one over ``trained`` (the stage's parameters of
        ``model``) minimising ``loss``."""
        return [Step("model", trained, self.loss)]


def vector_mismatch(latent: LatentSpec, why: str) -> str | None:
    """For ``Objective.mismatch``: why an objective that needs one continuous latent vector
    (``why``: what it does with it) cannot train ``latent``, or None when it can."""
    if latent.kind != "continuous" or len(latent.shape) != 1:
        return f"needs a continuous latent vector ({why}), got a {latent.describe()}"
    return None


def kl_per_image(terms: Terms) -> Tensor:
    """KL(q || p) per image ``[B]``: closed form when the pair has one, else the one-draw Monte
    Carlo estimate log q - log p (for a point mass, -log p: its rate)."""
    if terms.kl is not None:
        return terms.kl.flatten(1).sum(1)
    return (terms.log_qz - terms.log_pz)[0]


def kl_per_level(latent: LatentSpec, kl: Tensor) -> Tensor:
    """KL per level ``[B, L]`` from the per-dimension KL ``[B, ...]`` (a flat latent is one level)."""
    return torch.stack([level.flatten(1).sum(1) for level in latent.split(kl)], 1)


def iw_bound(log_weights: Tensor, groups: int = 1) -> Tensor:
    """The importance-weighted bound per image ``[B]``: logsumexp_k log w_k - log K over the
    draws of ``log_weights`` ``[K, B]`` (Burda et al. 2016, eq. 8; K = 1 is the ELBO). With
    ``groups`` M, ``log_weights`` is ``[M*K, B]``, cut into M consecutive blocks of K draws, and
    the result is the mean over blocks of each block's K-draw bound (the MIWAE bound, Rainforth
    et al. 2018, sec. 4; one group per draw, K = 1, gives the ELBO averaged over the draws)."""
    draws = log_weights.shape[0]
    if groups < 1 or draws % groups:
        raise ValueError(f"{draws} draws do not split into {groups} groups of equal size; "
                         "pass a number of groups that divides the draws")
    k = draws // groups
    return (torch.logsumexp(log_weights.unflatten(0, (groups, k)), 1) - math.log(k)).mean(0)


def negative_elbo(terms: Terms) -> Tensor:
    """Negative ELBO per image ``[B]`` in nats (float64) from the first draw, prior term included."""
    return (kl_per_image(terms) - terms.log_px[0]).double()


def log_mean_weight(terms: Terms) -> Tensor:
    """logsumexp_i log w_i - log k per image ``[B]``, in float64."""
    return iw_bound(terms.log_weights().double())


@torch.no_grad()
def importance_nll(model: VAE, batch: Batch, k: int, chunk: int, posterior: Posterior | None = None) -> Tensor:
    """-log p(x | context) per image ``[B]`` by importance sampling with q(z|x) as proposal
    (``posterior`` when the caller has encoded the batch already): log p(x) ~= logsumexp_i(log w_i)
    - log k over ``k`` draws taken ``chunk`` at a time through ``model.forward``, accumulated in
    float64. A deterministic posterior needs one draw (the bound)."""
    posterior = posterior if posterior is not None else model.encode(batch)
    if posterior.deterministic:
        k = 1
    running = None
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        part = log_mean_weight(model(batch, n, posterior=posterior)) + math.log(n)
        running = part if running is None else torch.logaddexp(running, part)
    return -(running - math.log(k))


def build_objective(combo) -> Objective:
    """The objective ``combo`` names, built with its resolved config."""
    entry = combo.objective
    return entry.cls(combo.data, combo.latent, combo.configs["objective"], combo.closed_form_kl)
