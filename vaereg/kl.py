"""KL(q || p) in closed form, by double dispatch on the exact (posterior type, prior type) pair,
as ``torch.distributions.kl.register_kl`` does. Plugins add pairs through the ``register_kl``
hook. No pair means no closed form: the objectives then use the Monte-Carlo estimate
log q(z|x) - log p(z) of the draws.

Types match exactly, never through ``isinstance``: a subclass of a posterior may change its
density (a flow on top of a Gaussian), so it gets the parent's KL only if it registers it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from vaereg.errors import VaeregError
from vaereg.parts import Posterior, Prior

#: ``rule(q, p)`` -> KL per latent dimension ``[B, *latent.shape]``.
KLRule = Callable[[Posterior, Prior], Tensor]


class KLTable:
    """Closed-form KL rules keyed by ``(posterior type, prior type)``."""

    def __init__(self) -> None:
        self.rules: dict[tuple[type, type], tuple[KLRule, str]] = {}

    def register(self, posterior: type[Posterior], prior: type[Prior], rule: KLRule, *, plugin: str) -> None:
        key = (posterior, prior)
        if key in self.rules:
            raise VaeregError(
                f"KL({posterior.__name__} || {prior.__name__}) is registered by two plugins: "
                f"{self.rules[key][1]!r} and {plugin!r}"
            )
        self.rules[key] = (rule, plugin)

    def has(self, posterior: type[Posterior], prior: type[Prior]) -> bool:
        return (posterior, prior) in self.rules

    def __call__(self, q: Posterior, p: Prior) -> Tensor | None:
        """KL(q || p) per latent dimension, or None when the pair has no closed form."""
        found = self.rules.get((type(q), type(p)))
        return None if found is None else found[0](q, p)
