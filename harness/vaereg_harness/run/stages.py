"""The stages of training, as the parts declare them: the autoencoder always first (against
the prior, or its stand-in when the prior is trained after it); then a prior trained by gradient
on the frozen encoder's latents (PixelCNN), or one that fits itself (EM). The trainer
(``vaereg_harness.run.trainer``) runs them in order."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from vaereg import collective
from vaereg.objectives import Step
from vaereg_harness.run.config import TrainConfig

if TYPE_CHECKING:
    from vaereg_harness.run.trainer import Trainer


class Stage:
    """One declared stage of training."""

    name: str

    def __init__(self, trainer: Trainer):
        self.trainer, self.model = trainer, trainer.model

    def run(self, index: int, start_epoch: int, opt_states: list[dict]) -> None:
        """Run (or, resumed at ``start_epoch``, finish) this stage, the ``index``-th."""
        raise NotImplementedError


class GradientStage(Stage):
    """A stage of epochs of optimiser steps: what it iterates over, what it optimises and one
    step of it; the trainer runs the epochs."""

    def run(self, index, start_epoch, opt_states):
        self.trainer.train_epochs(index, self, start_epoch, opt_states)

    def epochs(self, config: TrainConfig) -> int:
        return config.epochs

    def parameters(self) -> list[torch.nn.Parameter]:
        raise NotImplementedError

    def module(self) -> torch.nn.Module:
        """What a step calls (and DDP wraps); its frozen parameters are not synchronised."""
        raise NotImplementedError

    def inputs(self) -> tuple[Tensor, Tensor | None]:
        """What the epochs iterate over (rows on the device) and their labels."""
        raise NotImplementedError

    def train_mode(self) -> None:
        raise NotImplementedError

    def steps(self, trained: list[torch.nn.Parameter]) -> list[Step]:
        """The optimisers of the stage: one over ``trained`` unless the objective owns more."""
        return [Step(self.name, trained, lambda out, progress: out)]

    def forward(self, net: torch.nn.Module, rows: Tensor, labels: Tensor | None) -> Any:
        """What the steps' losses are computed from, by ``net``: the stage's ``module``, wrapped
        by DDP or ``torch.compile``."""
        raise NotImplementedError

    def finish(self) -> None:
        """Called once the stage's last epoch is done."""


class AutoencoderStage(GradientStage):
    """Encoder, decoder, likelihood and a jointly fitted prior, against the objective."""

    name = "autoencoder"

    def parameters(self):
        return self.model.stage_parameters(prior=False)

    def module(self):
        return self.model

    def inputs(self):
        return self.trainer.train_x, self.trainer.train_labels

    def train_mode(self):
        self.model.train()

    def steps(self, trained):
        return self.trainer.objective.steps(self.model, trained)

    def forward(self, net, rows, labels):
        t = self.trainer
        return net(t.data.batch(rows, labels, train=True), t.objective.draws)


class PriorGradientStage(GradientStage):
    """A prior fitted by maximum likelihood on the frozen encoder's latents, in train mode."""

    name = "prior"

    def epochs(self, config):
        return config.prior_epochs or config.epochs

    def parameters(self):
        return self.model.stage_parameters(prior=True)

    def module(self):
        return PriorDensity(self.model.prior)

    def inputs(self):
        return self.trainer.latents

    def train_mode(self):
        self.model.eval()
        self.model.prior.train()

    def steps(self, trained):
        def loss(log_prob: Tensor, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
            value = -log_prob.mean()
            return value, {"loss": value.detach()}

        return [Step(self.name, trained, loss)]

    def forward(self, net, rows, labels):
        return net(rows, self.trainer.data.context(labels))

    def finish(self):
        self.model.prior_trained = True


class PriorDensity(torch.nn.Module):
    """A prior's ``log_prob`` as a module's ``forward``, for DDP to wrap."""

    def __init__(self, prior: torch.nn.Module):
        super().__init__()
        self.prior = prior

    def forward(self, z: Tensor, context) -> Tensor:
        return self.prior.log_prob(z, context)


class PriorFitStage(Stage):
    """A prior that fits itself (EM) to the frozen encoder's latents, once."""

    name = "prior"

    def run(self, index, start_epoch, opt_states):
        if start_epoch > 0:  # fitted before the run was interrupted
            return
        t = self.trainer
        began = time.perf_counter()
        latents, labels = t.latents
        share = collective.my_share(latents.shape[0])  # EM sums its statistics over the ranks
        prior = self.model.prior
        prior.train()
        with torch.no_grad():
            history = prior.fit(latents[share], t.data.context(None if labels is None else labels[share]))
            for tensor in [*prior.parameters(), *prior.buffers()]:  # every rank ends with rank 0's fit
                collective.broadcast(tensor.data)
        self.model.prior_trained = True
        t.reports[self.name].seconds += time.perf_counter() - began
        for i, record in enumerate(history):
            t.log({"stage": self.name, "iteration": i + 1, "step": i + 1, **record})
        t.save(index, 1, [])


STAGES = {"gradient": PriorGradientStage, "fit": PriorFitStage}


