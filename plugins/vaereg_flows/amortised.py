"""What the planar and radial posteriors share (Rezende & Mohamed 2015, sec. 4.2): a conv
Gaussian encoder gives z_0 = mu + sigma * eps and, per image, the parameters of K flow steps
z_k = f_k(z_{k-1}) (amortised: one linear head outputs all of them, as the paper's inference
network does); the density of z_K is the base density over the steps' Jacobians (eq. 13):
log q(z_K | x) = log N(z_0; mu, sigma) - sum_k log |det df_k/dz_{k-1}|."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from torch import Tensor, nn

from vaereg import Context, DataSpec, Encoder, LatentSpec, Posterior, Range, continuous
from vaereg.gaussian import normal_log_prob
from vaereg.nets import conv_features


@dataclass
class AmortisedFlowConfig:
    """``latent_dim`` and ``width`` as the conv Gaussian encoder's; ``steps`` flow steps (K).
    The paper's MNIST results use K = 10 to 80 (Table 2); 10, its shortest, already improves on
    the diagonal Gaussian there, and each step costs one more pass over the draws."""

    latent_dim: Annotated[int, Range(1, 4096)] = 16
    width: Annotated[int, Range(1, 1024)] = 64
    steps: Annotated[int, Range(1, 128)] = 10


class AmortisedFlowPosterior(Posterior):
    """q(z | x): N(mu, sigma) pushed through K steps whose parameters ``params`` ``[B, K, P]``
    the encoder gave per image. A subclass names the step (``step``) and its parameter count
    (``params_per_step``). A draw remembers its log q, so the model scores it at no cost; the
    flow is not inverted, so no other z can be scored."""

    #: The flow's name, for the error on scoring a z this posterior did not draw.
    flow: ClassVar[str]

    @staticmethod
    def params_per_step(dim: int) -> int:
        """How many unconstrained numbers one step of a ``dim``-dimensional flow takes."""
        raise NotImplementedError

    @staticmethod
    def step(z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """One step on ``z`` ``[N, D]`` with its raw ``params`` ``[N, P]``: f(z) and
        log |det df/dz| ``[N]``."""
        raise NotImplementedError

    def __init__(self, mean: Tensor, log_std: Tensor, params: Tensor):
        self.mean, self.log_std, self.params = mean, log_std, params
        self._drawn: tuple[Tensor, Tensor] | None = None

    def _through(self, z0: Tensor) -> tuple[Tensor, Tensor]:
        """z_K and log q(z_K | x) ``[k, B]`` of base points ``z0`` ``[k, B, D]``."""
        base = normal_log_prob(z0, self.mean, self.log_std).sum(-1)
        z = z0.flatten(0, 1)
        params = self.params.repeat(z0.shape[0], 1, 1)  # row j * B + b is image b's, as in z
        log_det = z.new_zeros(z.shape[0])
        for k in range(params.shape[1]):
            z, step_log_det = self.step(z, params[:, k])
            log_det = log_det + step_log_det
        return z.view(z0.shape), base - log_det.view(base.shape)

    def rsample(self, k: int) -> Tensor:
        z0 = self.mean + torch.randn((k, *self.mean.shape), device=self.mean.device) * self.log_std.exp()
        z, log_q = self._through(z0)
        self._drawn = (z, log_q)
        return z

    def log_prob(self, z: Tensor) -> Tensor:
        if self._drawn is None or z is not self._drawn[0]:
            raise NotImplementedError(f"{type(self).__name__} scores only its own latest draws (rsample's "
                                      f"output): the {self.flow} flow is not inverted")
        return self._drawn[1]

    def mode(self) -> Tensor:
        """The flow's image of the base mean (a centre of q, not its exact mode)."""
        return self._through(self.mean[None])[0][0]


class AmortisedFlowEncoder(Encoder):
    """Strided 3x3 convolutions down to at most 4x4, then one linear map to (mu, log sigma)
    and every step's parameters; ``posterior`` (a subclass sets it) runs the flow."""

    Config = AmortisedFlowConfig
    posterior: ClassVar[type[AmortisedFlowPosterior]]

    @classmethod
    def latent_spec(cls, data: DataSpec, config: AmortisedFlowConfig) -> LatentSpec:
        return continuous(config.latent_dim)

    def __init__(self, data: DataSpec, latent: LatentSpec, config: AmortisedFlowConfig):
        super().__init__(data, latent, config)
        self.latent_dim, self.steps = config.latent_dim, config.steps
        self.trunk, self.condition, features = conv_features(data, config.width)
        d = config.latent_dim
        self.head = nn.Linear(features, 2 * d + config.steps * self.posterior.params_per_step(d))

    def forward(self, x: Tensor, context: Context) -> AmortisedFlowPosterior:
        out = self.head(self.condition(self.trunk(x), context))
        d = self.latent_dim
        mean, log_std, params = out.split([d, d, out.shape[1] - 2 * d], dim=1)
        return self.posterior(mean, log_std.clamp(-9.0, 5.0), params.view(out.shape[0], self.steps, -1))
