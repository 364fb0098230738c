"""NVAE (Vahdat & Kautz 2020, "NVAE: A Deep Hierarchical Variational Autoencoder"), small.

Groups of latent maps at a few scales. The bottom-up tower computes one feature per group;
the top-down path starts from a learned map, and at each group the prior is
p(z_l | z_{>l}) = N(mu_p, sigma_p) from the path's state (N(0, I) at the top) and the posterior
is residual to it, q(z_l | x, z_{>l}) = N(mu_p + dmu, sigma_p * dsigma), so that

    KL(q || p) = 1/2 (dmu^2 / sigma_p^2 + dsigma^2 - 1) - log dsigma    (per dimension).

z_l is merged into the state by a 1x1 convolution and a decoder cell; the decoder head
upsamples the final state to the image. Spectral regularisation of every layer is the
encoder's training-only loss; the objective defaults to KL warm-up over 30% of training
with KL balancing while warming up. Conditioned on a class label, a learned bias per class
enters the bottom-up stem and the top-down start, and the top group's prior is computed from
that start instead of N(0, I).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from torch import Tensor, nn

from vaereg import Context, DataSpec, LatentSpec, Range, context_bias, continuous
from vaereg.nets import UpStack, halvings, halvings_to
from vaereg.specs import hierarchy
from vaereg.topdown import Level, StateDecoder, TopDownEncoder, TopDownPosterior, TopDownPrior
from vaereg_nvae.cells import DecoderCell, EncoderCell
from vaereg_nvae.spectral import SpectralNorms


@dataclass
class NVAEConfig:
    """``scales`` latent resolutions, halving from half the image size (fewer if the image is
    too small); ``groups`` latent groups per scale, each a map of ``latent_channels``;
    ``spectral``: weight of the summed largest singular values in the loss."""

    width: Annotated[int, Range(1, 512)] = 32
    scales: Annotated[int, Range(1, 8)] = 2
    groups: Annotated[int, Range(1, 16)] = 2
    latent_channels: Annotated[int, Range(1, 256)] = 4
    spectral: Annotated[float, Range(0, 1e3)] = 0.01


def scale_sizes(data: DataSpec, config: NVAEConfig) -> list[tuple[int, int]]:
    """Latent resolutions, finest first: the image halved once, then again per scale."""
    sizes = halvings(data.height, data.width, floor=1)[1:]
    return sizes[: config.scales] or [(data.height, data.width)]


def residual_normal_kl(d_mean: Tensor, d_log_std: Tensor, prior_log_std: Tensor) -> Tensor:
    """KL(N(mu_p + dmu, sigma_p dsigma) || N(mu_p, sigma_p)) per dimension (NVAE eq. 2)."""
    return 0.5 * ((d_mean * torch.exp(-prior_log_std)).square() + torch.exp(2 * d_log_std) - 1) - d_log_std


class NVAEPrior(TopDownPrior):
    """The top-down path: a learned initial map, then per group a prior head, a posterior
    head (from state and bottom-up feature), a merge of z and a decoder cell; the state is
    upsampled where the next group sits at a finer scale."""

    def __init__(self, data: DataSpec, latent: LatentSpec, config: NVAEConfig):
        super().__init__(data, latent, config)
        width, c = config.width, config.latent_channels
        sizes = [level.shape[1:] for level in latent.levels]
        self.initial = nn.Parameter(torch.zeros(1, width, *sizes[-1]))
        self.condition = context_bias(data, width)
        # the top group's prior is N(0, I), or learned from the label-biased start when conditioned
        heads = len(sizes) if data.classes else len(sizes) - 1
        self.priors = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Conv2d(width, 2 * c, 3, padding=1))
                                    for _ in range(heads))
        self.posteriors = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Conv2d(2 * width, 2 * c, 3, padding=1))
                                        for _ in sizes)
        self.merges = nn.ModuleList(nn.Conv2d(width + c, width, 1) for _ in sizes)
        self.cells = nn.ModuleList(DecoderCell(width) for _ in sizes)
        self.upsample = nn.ModuleList(
            nn.Sequential(nn.Upsample(size=below), nn.Conv2d(width, width, 3, padding=1))
            if below != here else nn.Identity()
            for below, here in zip([sizes[0], *sizes[:-1]], sizes, strict=True)
        )

    def start(self, n: int, context: Context) -> Tensor:
        return self.condition(self.initial.expand(n, -1, -1, -1), context)

    def prior(self, level: int, state: Tensor) -> Level:
        if level == len(self.priors):
            zeros = state.new_zeros(state.shape[0], *self.latent.levels[level].shape)
            return Level(zeros, zeros)
        mean, log_std = self.priors[level](state).chunk(2, dim=1)
        return Level(mean, log_std.clamp(-7.0, 4.0))

    def posterior(self, level: int, state: Tensor, feature: Tensor, prior: Level) -> tuple[Level, Tensor]:
        d_mean, d_log_std = self.posteriors[level](torch.cat([state, feature], 1)).chunk(2, dim=1)
        d_log_std = d_log_std.clamp(-7.0, 4.0)
        q = Level(prior.mean + d_mean, prior.log_std + d_log_std)
        return q, residual_normal_kl(d_mean, d_log_std, prior.log_std)

    def absorb(self, level: int, state: Tensor, z: Tensor) -> Tensor:
        state = self.cells[level](self.merges[level](torch.cat([state, z], 1)))
        return self.upsample[level](state)


class NVAEPosterior(TopDownPosterior):
    def __init__(self, encoder: NVAEEncoder, features: list[Tensor], context: Context):
        super().__init__(encoder.prior, features, context)
        self.encoder = encoder

    def aux_loss(self) -> Tensor:
        if not self.encoder.config.spectral:
            return torch.zeros((), device=self.features[0].device)
        return self.encoder.config.spectral * self.encoder.spectral.estimate().sum()


class NVAEEncoder(TopDownEncoder):
    """NVAE: residual-cell bottom-up tower and top-down path sharing one module with the prior
    and decoder; groups of latent maps per scale, sized from the image."""

    Config = NVAEConfig
    posterior = NVAEPosterior
    prior_type = NVAEPrior
    objective: ClassVar[dict[str, object]] = {"warmup": 0.3, "kl_balance": True}

    @classmethod
    def latent_spec(cls, data: DataSpec, config: NVAEConfig) -> LatentSpec:
        return hierarchy(*(continuous(config.latent_channels, *size)
                           for size in scale_sizes(data, config) for _ in range(config.groups)))

    def __init__(self, data: DataSpec, latent: LatentSpec, config: NVAEConfig, out_channels: int):
        super().__init__(data, latent, config)
        self.config = config
        width, sizes = config.width, scale_sizes(data, config)
        self.stem = nn.Conv2d(data.channels, width, 3, padding=1)
        self.condition = context_bias(data, width)
        self.down = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Conv2d(width, width, 3, stride=2, padding=1)) for _ in sizes
        )
        self.cells = nn.ModuleList(
            nn.ModuleList(EncoderCell(width) for _ in range(config.groups)) for _ in sizes
        )
        self.prior = NVAEPrior(data, latent, config)
        finest = sizes[0]
        self.decoder = StateDecoder(nn.Sequential(
            DecoderCell(width), nn.SiLU(), UpStack(width, out_channels, halvings_to(data.height, data.width, finest))
        ))
        self.spectral = SpectralNorms(self)

    def bottom_up(self, x: Tensor, context: Context) -> list[Tensor]:
        h = self.condition(self.stem(2 * x - 1), context)
        features = []
        for down, cells in zip(self.down, self.cells, strict=True):
            h = down(h)
            for cell in cells:
                h = cell(h)
                features.append(h)
        return features

    def forward(self, x: Tensor, context: Context) -> NVAEPosterior:
        return NVAEPosterior(self, self.bottom_up(x, context), context)
