"""beta-VAE with a controlled capacity increase (Burgess et al. 2018, "Understanding disentangling in
beta-VAE", eq. 8):

    loss = -log p(x|z) + gamma |KL(q(z|x) || p(z)) - C| + aux

with the KL averaged over the batch before the absolute value, and the target capacity C (nats)
rising linearly with the fraction of training done:

    C(progress) = c_min + (c_max - c_min) min(1, progress / ramp)

The paper trains dSprites (64x64 binary pixels) with gamma = 1000 and C from 0 to 25 nats. gamma
must outweigh what a nat of KL buys in reconstruction for the KL to track C; 8x8 digits have 64x
fewer pixels to reconstruct, so the default is gamma = 100 (still far above the 1 of the plain ELBO),
keeping the paper's c_max = 25.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torch import Tensor

from vaereg import Objective, Range
from vaereg.model import Terms
from vaereg.objectives import kl_per_image


@dataclass
class CapacityConfig:
    """``gamma``: weight of the KL's distance to the target capacity. ``c_min``/``c_max``: the
    capacity (nats per image) at the start and the end of the ramp. ``ramp``: fraction of
    training over which the capacity rises (then stays at ``c_max``)."""

    gamma: Annotated[float, Range(0, 1e6)] = 100.0
    c_min: Annotated[float, Range(0, 1e4)] = 0.0
    c_max: Annotated[float, Range(0, 1e4)] = 25.0
    ramp: Annotated[float, Range(0, 1, open_low=True)] = 1.0

    def __post_init__(self) -> None:
        if self.c_min > self.c_max:
            raise ValueError(f"c_min ({self.c_min}) is above c_max ({self.c_max}); the capacity only rises, "
                             "set c_min <= c_max")

    def capacity(self, progress: float) -> float:
        return self.c_min + (self.c_max - self.c_min) * min(1.0, progress / self.ramp)


class Capacity(Objective):
    """Reconstruction plus gamma times the batch KL's distance to the rising capacity C."""

    Config = CapacityConfig

    def loss(self, terms: Terms, progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        config = self.config
        capacity = config.capacity(progress)
        kl = kl_per_image(terms).mean()
        loss = -terms.log_px[0].mean() + config.gamma * (kl - capacity).abs() + terms.aux
        stats = {"loss": loss.detach(), "kl": kl.detach(), "capacity": kl.new_tensor(capacity)}
        stats.update({k: v.detach() for k, v in terms.stats.items()})
        return loss, stats


PRESET = ("capacity", "beta-VAE with controlled capacity increase (Burgess et al. 2018): the KL is held "
          "near a target that rises from c_min to c_max nats", {})
