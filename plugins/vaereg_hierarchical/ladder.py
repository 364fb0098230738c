"""A Markov Gaussian hierarchy p(z_L) p(z_{L-1} | z_L) ... p(x | z_1) with ladder inference
(Sønderby et al. 2016, "Ladder Variational Autoencoders"): the bottom-up tower proposes a
Gaussian (mu_hat, sigma_hat) per level, and the posterior merges it with the top-down prior
(mu_p, sigma_p) computed from the level above, one of two ways:

- ``residual`` (default): q = N(mu_p + mu_hat, sigma_p * sigma_hat), relative to the prior as
  in NVAE (Vahdat & Kautz 2020);
- ``precision``: LVAE's precision weighting, sigma_q^-2 = sigma_hat^-2 + sigma_p^-2 and
  mu_q = sigma_q^2 (mu_hat sigma_hat^-2 + mu_p sigma_p^-2). On digits without KL warm-up it
  lets the prior capture the posterior early (every level's KL near 0); with warm-up it trains.

Conditioned on a class label y, the top-down state carries a learned embedding of y beside z_l,
so p(z_L | y), every p(z_{l-1} | z_l, y) and the decoder see it; the bottom-up tower adds it
to its features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import Tensor, nn

from vaereg import Context, DataSpec, LatentSpec, Range, context_bias, continuous
from vaereg.gaussian import gaussian_kl
from vaereg.nets import DownStack, Reshape, UpStack, halvings
from vaereg.specs import hierarchy
from vaereg.topdown import Level, StateDecoder, TopDownEncoder, TopDownPrior


@dataclass
class LadderConfig:
    """``levels`` Gaussian levels; z_1 has ``latent_dim`` dimensions and each level above half
    as many (at least 2). ``width``: channels of the convolutions; MLPs between levels use
    ``4 * width`` units."""

    levels: Annotated[int, Range(1, 16)] = 2
    latent_dim: Annotated[int, Range(1, 4096)] = 16
    width: Annotated[int, Range(1, 1024)] = 64
    merge: Literal["residual", "precision"] = "residual"

    def dims(self) -> list[int]:
        return [max(2, self.latent_dim >> level) for level in range(self.levels)]


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


def split_gaussian(t: Tensor) -> Level:
    mean, log_std = t.chunk(2, dim=1)
    return Level(mean, log_std.clamp(-7.0, 4.0))


def residual(proposal: Level, prior: Level) -> Level:
    return Level(prior.mean + proposal.mean, prior.log_std + proposal.log_std)


def precision_weighted(proposal: Level, prior: Level) -> Level:
    log_precision_hat, log_precision_p = -2 * proposal.log_std, -2 * prior.log_std
    log_precision = torch.logaddexp(log_precision_hat, log_precision_p)
    mean = (proposal.mean * torch.exp(log_precision_hat - log_precision)
            + prior.mean * torch.exp(log_precision_p - log_precision))
    return Level(mean, -0.5 * log_precision)


MERGES = {"residual": residual, "precision": precision_weighted}


class LadderPrior(TopDownPrior):
    """N(0, I) at the top (a learned Gaussian per class when conditioned on a label); below,
    each level's mean and log sigma are an MLP of the level above (and the label)."""

    def __init__(self, data: DataSpec, latent: LatentSpec, config: LadderConfig):
        super().__init__(data, latent, config)
        dims, hidden = config.dims(), 4 * config.width
        self.merge = MERGES[config.merge]
        self.label_dim = config.width if data.classes else 0
        self.label = nn.Embedding(data.classes, self.label_dim) if data.classes else None
        self.top = nn.Linear(self.label_dim, 2 * dims[-1]) if data.classes else None
        self.conditionals = nn.ModuleList(mlp(dims[i + 1] + self.label_dim, hidden, 2 * dims[i])
                                          for i in range(len(dims) - 1))

    def start(self, n: int, context: Context) -> Tensor:
        if self.label is None:
            return self.anchor.new_zeros(n, 0)
        return self.label(context.label)

    def prior(self, level: int, state: Tensor) -> Level:
        if level == len(self.latent.levels) - 1:
            if self.top is not None:
                return split_gaussian(self.top(state))
            zeros = state.new_zeros(state.shape[0], self.latent.levels[level].size)
            return Level(zeros, zeros)
        return split_gaussian(self.conditionals[level](state))

    def posterior(self, level: int, state: Tensor, feature: Tensor, prior: Level) -> tuple[Level, Tensor]:
        q = self.merge(split_gaussian(feature), prior)
        return q, gaussian_kl(q.mean, q.log_std, prior.mean, prior.log_std)

    def absorb(self, level: int, state: Tensor, z: Tensor) -> Tensor:
        # Markov: the level below depends on z_l alone (and the label the state carries last)
        return torch.cat([z, state[:, state.shape[1] - self.label_dim:]], 1)


class LadderEncoder(TopDownEncoder):
    """Ladder VAE: a conv bottom-up tower with an MLP per level, a Markov Gaussian top-down
    prior, and a conv decoder from z_1."""

    Config = LadderConfig
    prior_type = LadderPrior

    @classmethod
    def latent_spec(cls, data: DataSpec, config: LadderConfig) -> LatentSpec:
        return hierarchy(*(continuous(d) for d in config.dims()))

    def __init__(self, data: DataSpec, latent: LatentSpec, config: LadderConfig, out_channels: int):
        super().__init__(data, latent, config)
        dims, width, hidden = config.dims(), config.width, 4 * config.width
        sizes = halvings(data.height, data.width)
        h, w = sizes[-1]
        self.trunk = nn.Sequential(DownStack(data.channels, width, sizes), nn.Flatten(),
                                   nn.Linear(width * h * w, hidden))
        self.condition = context_bias(data, hidden)
        self.up = nn.ModuleList(nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU()) for _ in dims[1:])
        self.proposals = nn.ModuleList(nn.Linear(hidden, 2 * d) for d in dims)
        self.prior = LadderPrior(data, latent, config)
        self.decoder = StateDecoder(nn.Sequential(
            nn.Linear(dims[0] + self.prior.label_dim, width * h * w), Reshape(width, h, w), nn.SiLU(),
            UpStack(width, out_channels, sizes),
        ))

    def bottom_up(self, x: Tensor, context: Context) -> list[Tensor]:
        d = nn.functional.silu(self.condition(self.trunk(x), context))
        features = [self.proposals[0](d)]
        for up, proposal in zip(self.up, self.proposals[1:], strict=True):
            d = up(d)
            features.append(proposal(d))
        return features
