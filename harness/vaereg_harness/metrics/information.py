"""The mutual information I(x; z) between the scored test images and their latents under the
encoder's joint q(x, z) = p_data(x) q(z | x), with the aggregate posterior q(z) taken over the
same images (Hoffman & Johnson 2016, "ELBO surgery": the KL term of the ELBO averaged over the data is
I(x; z) + KL(q(z) || p(z)); the estimator of He et al. 2019, "Lagging inference networks")."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor

from vaereg.combo import Combo
from vaereg.config import Range
from vaereg.data import Dataset
from vaereg.metrics import Column, Metric, Scoring
from vaereg.parts import Posterior
from vaereg_harness.launch import distributed

#: ``posteriors(start, stop)``: q(z | x_n) of images ``start <= n < stop`` as one batch posterior.
PosteriorSlices = Callable[[int, int], Posterior]

PAIR_ELEMENTS = 1 << 22  # latent values per log q(z_i | x_j) call: bounds the pairwise pass's memory


@torch.no_grad()
def mutual_information(posteriors: PosteriorSlices, n: int, *, draws: int = 1, batch_size: int = 256) -> Tensor:
    """Per image ``[n]`` (float64, nats), the mean over ``draws`` draws z ~ q(z | x_i) of
    log q(z | x_i) - log q(z), with q(z) = (1/n) sum_j q(z | x_j) the aggregate posterior over
    the ``n`` images. Their mean estimates I(x; z) = E_x E_q(z|x)[log q(z|x) - log q(z)]
    (Hoffman & Johnson 2016); their standard deviation / sqrt(n) its sampling error over
    the images. q(z) holds the term j = i, so each value, and the estimate, is at most log n:
    the estimate saturates when the posteriors barely overlap.

    Images are encoded ``batch_size`` at a time: once to draw, once to score every draw under
    their posteriors, ``PAIR_ELEMENTS`` latent values per call of ``Posterior.log_prob``. Draws
    come from the caller's torch stream."""
    own, latents = [], []
    for start in range(0, n, batch_size):
        posterior = posteriors(start, min(start + batch_size, n))
        z = posterior.rsample(draws)  # [draws, B, *shape]
        own.append(posterior.log_prob(z).double().T)  # log q(z_i | x_i): [B, draws]
        latents.append(z.transpose(0, 1).flatten(0, 1))  # image-major: [B * draws, *shape]
    log_own, z = torch.cat(own), torch.cat(latents)
    log_sum = torch.full((z.shape[0],), -math.inf, dtype=torch.float64, device=z.device)
    for start in range(0, n, batch_size):  # log sum_j q(z_i | x_j), over the images' posteriors j
        posterior = posteriors(start, min(start + batch_size, n))
        images = min(start + batch_size, n) - start
        rows = max(1, PAIR_ELEMENTS // (images * z[0].numel()))
        for first in range(0, z.shape[0], rows):
            some = z[first:first + rows]
            log_q = posterior.log_prob(some[:, None].expand(some.shape[0], images, *some.shape[1:]))
            log_sum[first:first + rows] = torch.logaddexp(log_sum[first:first + rows],
                                                           torch.logsumexp(log_q.double(), 1))
    log_aggregate = (log_sum - math.log(n)).view(n, draws)
    return (log_own - log_aggregate).mean(1)


@dataclass
class MutualInformationConfig:
    """``draws``: latents drawn from q(z | x) per image (He et al. 2019 draw one)."""

    draws: Annotated[int, Range(1, 64)] = 1


class MutualInformation(Metric):
    """I(x; z) over the scored test images by ``mutual_information``, and its standard error over
    the images (which leaves out the estimator's bias from the finite aggregate posterior). The
    estimate is bounded by log N for N scored images. Seeded from the run's stream
    ``(seed, "metric", "mutual-information")``."""

    Config = MutualInformationConfig
    columns = (
        Column("mutual_information", float, "nats", None, "I(x; z) under the encoder, with the aggregate posterior "
               "over the N scored test images (Hoffman & Johnson 2016); at most log N, so it saturates there",
               shown=False),
        Column("mutual_information_se", float, "nats", None, "standard error of mutual_information over the "
               "test images (std / sqrt(N)); sampling error only, not the bias of the finite aggregate posterior",
               shown=False),
    )

    def mismatch(self, data: Dataset, combo: Combo) -> str | None:
        posterior = combo.parts["encoder"].cls.posterior
        if combo.latent.is_codes or posterior.deterministic:
            return (f"needs a continuous latent with a non-deterministic posterior that gives log q(z | x), got a "
                    f"{combo.latent.describe()} with a {posterior.__name__} posterior")
        return None

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        test, model = scoring.test, scoring.model
        stored = test.test.to(scoring.device)
        labels = test.test_labels.to(scoring.device) if test.spec.classes else None

        def posteriors(start: int, stop: int) -> Posterior:
            return model.encode(test.batch(stored[start:stop], None if labels is None else labels[start:stop],
                                           train=False))

        model.eval()
        try:
            with distributed.seeded(scoring.seed, "metric", "mutual-information"):
                values = mutual_information(posteriors, stored.shape[0], draws=self.config.draws)
        except NotImplementedError as exc:  # a flow that scores only its own draws
            warnings.warn(f"mutual-information left null: {exc}", stacklevel=2)
            return {}
        n = values.shape[0]
        return {"mutual_information": values.mean().item(),
                "mutual_information_se": values.std().item() / math.sqrt(n) if n > 1 else None}
