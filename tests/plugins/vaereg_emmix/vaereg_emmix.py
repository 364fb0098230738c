"""A diagonal-covariance Gaussian mixture prior fitted by EM to the frozen encoder's posterior
means after the autoencoder has trained against N(0, I) (ex-post density estimation, Ghosh
et al. 2020)."""

import math
from dataclasses import dataclass
from typing import Annotated

import torch

from vaereg import Prior, PriorLatents, Range, hookimpl

VAEREG_PLUGIN_API = 3


@dataclass
class MixtureConfig:
    components: Annotated[int, Range(1, 1000)] = 4
    iterations: Annotated[int, Range(1, 10000)] = 30
    floor: Annotated[float, Range(0, 1, open_low=True)] = 1e-4  # variance floor


def component_log_probs(z, weights, means, variances):
    """log pi_k + log N(z; mu_k, diag var_k) for every row and component: ``[N, K]``."""
    log_n = -0.5 * ((z[:, None] - means[None]).square() / variances[None] + variances[None].log()
                    + math.log(2 * math.pi)).sum(2)
    return log_n + weights.log()[None]


class EMMixture(Prior):
    schedule = "fit"
    prior_latents = PriorLatents(source="mode")
    Config = MixtureConfig
    latent_kinds = frozenset({"continuous"})

    def __init__(self, data, latent, config):
        super().__init__(data, latent, config)
        self.config = config
        k, d = config.components, latent.size
        self.register_buffer("weights", torch.full((k,), 1.0 / k))
        self.register_buffer("means", torch.zeros(k, d))
        self.register_buffer("variances", torch.ones(k, d))

    def log_prob(self, z, context):
        return torch.logsumexp(component_log_probs(z.flatten(1), self.weights, self.means, self.variances), 1)

    def sample(self, n, context):
        pick = torch.multinomial(self.weights, n, replacement=True)
        return self.means[pick] + torch.randn(n, self.means.shape[1], device=self.means.device) * self.variances[
            pick].sqrt()

    def fit(self, latents, context):
        z = latents.flatten(1).double()
        g = torch.Generator().manual_seed(0)
        means = z[torch.randperm(z.shape[0], generator=g)[: self.config.components]].clone()
        variances = z.var(0, keepdim=True).expand_as(means).clone()
        weights = torch.full((means.shape[0],), 1.0 / means.shape[0], dtype=z.dtype)
        history = []
        for _ in range(self.config.iterations):
            log_joint = component_log_probs(z, weights, means, variances)
            history.append({"log_likelihood": torch.logsumexp(log_joint, 1).mean().item()})
            r = log_joint.softmax(1)  # E step: responsibilities
            n_k = r.sum(0) + 1e-10  # M step
            weights = n_k / z.shape[0]
            means = (r.T @ z) / n_k[:, None]
            variances = ((r.T @ z.square()) / n_k[:, None] - means.square()).clamp(min=self.config.floor)
        self.weights.copy_(weights)
        self.means.copy_(means)
        self.variances.copy_(variances)
        return history


@hookimpl
def register_parts(register):
    register("emmix", EMMixture)
