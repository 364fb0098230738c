"""Top-down Gaussian hierarchies whose prior and posterior share one path (ladder VAE, NVAE).

The walk runs from the top level z_L down to z_1 carrying a state s. At level l the prior is
p(z_l | s) and the posterior q(z_l | x, s) combines s with the encoder's bottom-up feature for
that level (Sønderby et al. 2016; Vahdat & Kautz 2020); the state then absorbs z_l. The final
state is what the decoder consumes. One module holds the walk, so a ``TopDownEncoder`` fills
the encoder, prior and decoder slots and the likelihood stays swappable. The context enters
the walk at its start (``start``), so every level and the decoder see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from vaereg.context import Context
from vaereg.gaussian import normal_log_prob
from vaereg.parts import Encoder, Posterior, Prior
from vaereg.specs import DataSpec, LatentSpec


@dataclass
class Level:
    """One level's distribution: ``mean`` and ``log_std`` ``[N, *level.shape]``."""

    mean: Tensor
    log_std: Tensor


@dataclass
class Walk:
    """One pass down the hierarchy for N rows."""

    z: Tensor  # [N, size], levels joined as LatentSpec.join does
    state: Tensor  # the final state: the decoder's input
    log_p: Tensor  # [N]
    log_q: Tensor | None  # [N], when the walk had bottom-up features
    kl: Tensor | None  # [N, size], closed-form KL per dimension given the levels above


class TopDownPrior(Prior):
    """p(z_L) p(z_{L-1} | z_L) ... p(z_1 | z_{>1}) through a state, plus the posterior step
    that shares it. Subclasses define the four steps below; level indices count from 0 (z_1)."""

    latent_kinds = frozenset({"hierarchical"})

    def __init__(self, data: DataSpec, latent: LatentSpec, config: object):
        super().__init__(data, latent, config)
        self.latent = latent
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    def start(self, n: int, context: Context) -> Tensor:
        """The state above the top level for ``n`` rows under ``context``."""
        raise NotImplementedError

    def prior(self, level: int, state: Tensor) -> Level:
        raise NotImplementedError

    def posterior(self, level: int, state: Tensor, feature: Tensor, prior: Level) -> tuple[Level, Tensor]:
        """q(z_l | x, z_{>l}) and its KL from ``prior`` per dimension."""
        raise NotImplementedError

    def absorb(self, level: int, state: Tensor, z: Tensor) -> Tensor:
        """The state below level ``level`` once ``z`` is drawn there."""
        raise NotImplementedError

    def walk(self, n: int, context: Context, features: list[Tensor] | None = None,
             given: Tensor | None = None) -> Walk:
        """Draw (or, with ``given`` ``[n, size]``, score) every level from the top down; with
        bottom-up ``features`` (one per level, ``[n, ...]``) the draws come from q, else from p."""
        fixed = self.latent.split(given) if given is not None else None
        state = self.start(n, context)
        drawn: list[Tensor] = [None] * len(self.latent.levels)  # type: ignore[list-item]
        kls: list[Tensor] = [None] * len(self.latent.levels)  # type: ignore[list-item]
        log_p = torch.zeros(n, device=state.device)
        log_q = torch.zeros(n, device=state.device) if features is not None else None
        for level in reversed(range(len(self.latent.levels))):
            p = self.prior(level, state)
            q = p
            if features is not None:
                q, kls[level] = self.posterior(level, state, features[level], p)
            z = fixed[level] if fixed is not None else q.mean + torch.randn_like(q.mean) * q.log_std.exp()
            log_p = log_p + normal_log_prob(z, p.mean, p.log_std).flatten(1).sum(1)
            if log_q is not None:
                log_q = log_q + normal_log_prob(z, q.mean, q.log_std).flatten(1).sum(1)
            drawn[level] = z
            state = self.absorb(level, state, z)
        kl = self.latent.join(kls) if features is not None else None
        return Walk(self.latent.join(drawn), state, log_p, log_q, kl)

    def log_prob(self, z: Tensor, context: Context) -> Tensor:
        return self.walk(z.shape[0], context, given=z).log_p

    def sample(self, n: int, context: Context) -> Tensor:
        return self.walk(n, context).z


def walk_kl(q: TopDownPosterior, p: TopDownPrior) -> Tensor:
    """The KL rule of a top-down pair: each level's closed-form KL given the levels above, which
    the posterior's walk computed for its first draw."""
    return q.kl


class TopDownPosterior(Posterior):
    """q(z | x) = prod_l q(z_l | x, z_{>l}); drawing it also yields log p(z) and the decoder's
    input, so a draw costs one walk."""

    def __init__(self, prior: TopDownPrior, features: list[Tensor], context: Context):
        self.prior, self.features, self.context = prior, features, context
        self.batch = features[0].shape[0]
        self._drawn: tuple[Tensor, Walk] | None = None

    def _walk(self, z: Tensor | None, k: int) -> Walk:
        if z is not None and self._drawn is not None and z is self._drawn[0]:
            return self._drawn[1]
        features = [f.expand(k, *f.shape).flatten(0, 1) for f in self.features]
        return self.prior.walk(k * self.batch, self.context.repeat(k), features,
                               None if z is None else z.flatten(0, 1))

    def rsample(self, k: int) -> Tensor:
        walk = self._walk(None, k)
        z = walk.z.view(k, self.batch, -1)
        self._drawn = (z, walk)
        return z

    def log_prob(self, z: Tensor) -> Tensor:
        return self._walk(z, z.shape[0]).log_q.view(z.shape[:2])

    def log_prior(self, z: Tensor) -> Tensor:
        return self._walk(z, z.shape[0]).log_p.view(z.shape[:2])

    def decoder_input(self, z: Tensor) -> Tensor:
        return self._walk(z, z.shape[0]).state

    @property
    def kl(self) -> Tensor:
        """``[B, size]`` KL per dimension of the latest draw's first sample."""
        if self._drawn is None:
            self.rsample(1)
        return self._drawn[1].kl[: self.batch]


class StateDecoder(nn.Module):
    """The decoder slot of a top-down hierarchy: ``net`` maps the walk's final state, which
    already carries the context, to the likelihood's parameters."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, state: Tensor, context: Context) -> Tensor:
        return self.net(state)


class TopDownEncoder(Encoder):
    """The bottom-up tower of a top-down hierarchy; it owns the walk (``self.prior``) and the
    decoder head (``self.decoder``), and fills those slots."""

    posterior = TopDownPosterior
    fills: ClassVar[dict[str, str]] = {"decoder": "decoder", "prior": "prior"}
    prior: TopDownPrior
    decoder: StateDecoder

    def bottom_up(self, x: Tensor, context: Context) -> list[Tensor]:
        """One feature per level, z_1 first."""
        raise NotImplementedError

    def forward(self, x: Tensor, context: Context) -> TopDownPosterior:
        return TopDownPosterior(self.prior, self.bottom_up(x, context), context)

    def embed(self, z: Tensor, context: Context) -> Tensor:
        return self.prior.walk(z.shape[0], context, given=z).state
