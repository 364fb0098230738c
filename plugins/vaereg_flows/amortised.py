"""What the planar and radial posteriors share (Rezende & Mohamed 2015, sec. 4.2): a conv
Gaussian encoder gives z_0 = mu + sigma * eps and, per image, the parameters of K flow steps
z_k = f_k(z_{k-1}) (amortised: one linear head outputs all of them, as the paper's inference
network does); the density of z_K is the base density over the steps' Jacobians (eq. 13):
log q(z_K | x) = log N(z_0; mu, sigma) - sum_k log |det df_k/dz_{k-1}|."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from torch import Tensor, nn

from vaereg import Context, DataSpec, Encoder, LatentSpec, Range, continuous
from vaereg.gaussian import normal_log_prob
from vaereg.nets import conv_features
from vaereg_flows.flowed import FlowedGaussian


@dataclass
class AmortisedFlowConfig:
    """``latent_dim`` and ``width`` as the conv Gaussian encoder's; ``steps`` flow steps (K).
    The paper's MNIST results use K = 10 to 80 (Table 2); 10, its shortest, already improves on
    the diagonal Gaussian there, and each step costs one more pass over the draws."""

    latent_dim: Annotated[int, Range(1, 4096)] = 16
    width: Annotated[int, Range(1, 1024)] = 64
    steps: Annotated[int, Range(1, 128)] = 10


class AmortisedFlowPosterior(FlowedGaussian):
    """q(z | x): N(mu, sigma) pushed through K steps whose parameters ``params`` ``[B, K, P]``
    the encoder gave per image. A subclass names the step (``step``) and its parameter count
    (``params_per_step``). The flow is not inverted, so only the posterior's own draws are scored."""

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
        super().__init__(mean, log_std)
        self.params = params

    def through(self, z0: Tensor) -> tuple[Tensor, Tensor]:
        base = normal_log_prob(z0, self.mean, self.log_std).sum(-1)
        z = z0.flatten(0, 1)
        params = self.params.repeat(z0.shape[0], 1, 1)  # row j * B + b is image b's, as in z
        log_det = z.new_zeros(z.shape[0])
        for k in range(params.shape[1]):
            z, step_log_det = self.step(z, params[:, k])
            log_det = log_det + step_log_det
        return z.view(z0.shape), base - log_det.view(base.shape)

    def score(self, z: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} scores only its own latest draws (rsample's output): "
                                  f"the {self.flow} flow is not inverted")


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
