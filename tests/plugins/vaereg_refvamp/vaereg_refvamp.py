"""VampPrior (Tomczak and Welling 2018) as an ordinary prior: the mixture of the paired
encoder's posteriors at K learned pseudo-inputs, p(z) = 1/K sum_k q(z | u_k)."""

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn

from vaereg import Context, DiagonalGaussian, Prior, Range, UsageError, hookimpl
from vaereg.gaussian import normal_log_prob

VAEREG_PLUGIN_API = 3


@dataclass
class VampConfig:
    pseudo_inputs: Annotated[int, Range(1, 10000)] = 100


class VampPrior(Prior):
    """The encoder's diagonal Gaussians at ``pseudo_inputs`` learned images, mixed equally."""

    Config = VampConfig
    latent_kinds = frozenset({"continuous"})

    def __init__(self, data, latent, config):
        super().__init__(data, latent, config)
        self.pseudo = nn.Parameter(torch.rand(config.pseudo_inputs, data.channels, data.height, data.width))

    def prepare(self):
        """Encode the pseudo-inputs once for this pass; every log_prob and sample reuses them."""
        q = self.encoder(self.pseudo.clamp(0, 1), Context())
        if not isinstance(q, DiagonalGaussian):
            raise UsageError("prior 'vamp' needs an encoder whose posterior is a DiagonalGaussian")
        self.components = q

    def log_prob(self, z, context):
        q = self.components
        per_component = normal_log_prob(z[:, None], q.mean[None], q.log_std[None]).flatten(2).sum(2)
        return torch.logsumexp(per_component, 1) - math.log(q.mean.shape[0])

    def sample(self, n, context):
        q = self.components
        pick = torch.randint(q.mean.shape[0], (n,), device=q.mean.device)
        return q.mean[pick] + torch.randn_like(q.mean[pick]) * q.log_std[pick].exp()


@hookimpl
def register_parts(register):
    register("refvamp", VampPrior)
