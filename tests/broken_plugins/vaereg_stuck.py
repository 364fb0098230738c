"""An objective with a critic step whose loss never reaches the critic (it forgot to use it):
the critic's optimiser moves nothing, and training would go on without a word."""

from torch import nn

from vaereg import Objective, Step, hookimpl

VAEREG_PLUGIN_API = 3


class Stuck(Objective):
    def __init__(self, data, latent, config, closed_form_kl):
        super().__init__(data, latent, config, closed_form_kl)
        self.critic = nn.Linear(1, 1)

    def loss(self, terms, progress):
        loss = -terms.log_weights().mean() + terms.aux
        return loss, {"loss": loss.detach()}

    def steps(self, model, trained):
        return [Step("model", trained, self.loss), Step("critic", list(self.critic.parameters()), self.loss)]


@hookimpl
def register_objectives(register):
    register("stuck", Stuck)
