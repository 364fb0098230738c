"""The probe batch: before any epoch, two images go through the assembled model part by part,
and every output is checked against its contract (``vaereg.parts``, ``vaereg.objectives``).

A wrong shape, even one that still broadcasts, or a non-finite value is refused with one line
naming the plugin, the part and what was expected, instead of training silently or failing
deep inside the next part. The probe runs without gradient, in eval mode and on a forked random
stream, and puts back every module's mode and buffers: it never changes what training does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from vaereg.data import Dataset
from vaereg.errors import UsageError
from vaereg.model import VAE, Batch
from vaereg.objectives import Objective, build_objective
from vaereg.parts import Posterior, Prior

if TYPE_CHECKING:
    from vaereg.combo import Combo

IMAGES = 2  # B: images in the probe batch
DRAWS = 3  # k: draws per image; unlike B, so a draw axis swapped with the batch axis shows


class ProbeError(UsageError):
    """A part's output on the probe batch breaks its contract."""


def shown(shape: tuple[int, ...] | torch.Size) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def device_of(module: nn.Module) -> torch.device:
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def probe_batch(data: Dataset, device: torch.device, n: int = IMAGES) -> Batch:
    """The first ``n`` training images of ``data``, as a training batch on ``device``."""
    labels = data.train_labels[:n].to(device) if data.spec.classes else None
    return data.batch(data.train[:n].to(device), labels, train=True)


def forked(device: torch.device):
    """A forked random stream (and CUDA's on ``device``): what runs inside leaves the caller's as it was."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def probe(model: VAE, data: Dataset, objective: Objective | None = None) -> None:
    """Check ``model`` (and ``objective``; by default the combo's, built on the forked stream) on
    two images of ``data``; a broken contract raises ``ProbeError`` naming the plugin and part.
    Runs without gradient, in eval mode, on a forked random stream; the modes, and the buffers a
    forward pass may update (NVAE's power iteration), are put back."""
    device = device_of(model)
    with forked(device), torch.no_grad():
        if objective is None:
            objective = build_objective(model.combo).to(device)
        modules = (model, objective)
        modes = [(m, m.training) for module in modules for m in module.modules()]
        buffers = [(b, b.clone()) for module in modules for b in module.buffers()]
        try:
            model.eval()
            objective.eval()
            Probe(model, objective, probe_batch(data, device)).run()
        finally:
            for m, training in modes:
                m.training = training
            for b, saved in buffers:
                b.copy_(saved)


def probe_combo(combo: Combo, data: Dataset, device: torch.device) -> None:
    """Build ``combo`` on ``device`` from a forked random stream and probe it: a combo checked
    before anything is written."""
    with forked(device):
        model = VAE(combo).to(device)
    probe(model, data)


class Probe:
    """One pass over the probe batch, following ``VAE.terms`` and ``VAE.sample`` step by step."""

    def __init__(self, model: VAE, objective: Objective, batch: Batch):
        self.model, self.objective, self.batch = model, objective, batch
        self.combo = model.combo
        self.latent = tuple(self.combo.latent.shape)
        spec = self.combo.data
        self.image = (spec.channels, spec.height, spec.width)

    def run(self) -> None:
        model, batch = self.model, self.batch
        b, k = batch.x.shape[0], DRAWS
        posterior = self.posterior()
        encoder = self.who("encoder")
        z = self.checked(encoder, f"posterior.rsample({k})", lambda: posterior.rsample(k), (k, b, *self.latent),
                         "[k, B, *latent.shape]")
        if not posterior.deterministic:
            self.checked(encoder, "posterior.log_prob(z)", lambda: posterior.log_prob(z), (k, b), "[k, B]")
        known = self.call(encoder, "posterior.log_prior(z)", lambda: posterior.log_prior(z))
        if known is not None:
            self.expect(encoder, "posterior.log_prior(z)", known, (k, b), "[k, B]")
        inputs = self.call(encoder, "posterior.decoder_input(z)", lambda: posterior.decoder_input(z))
        self.leading(encoder, "posterior.decoder_input(z)", inputs, k * b, "k*B")
        context = batch.context.repeat(k)
        params = self.decode(inputs, context, k * b, "k*B")
        x = batch.x.expand(k, *batch.x.shape).flatten(0, 1)
        self.checked(self.who("likelihood"), "log_prob(x, params)",
                     lambda: model.likelihood.log_prob(x, params, context), (k * b,), "[k*B]")
        for who, prior in self.priors():
            self.call(who, "prepare()", prior.prepare)
            self.checked(who, "log_prob(z)", lambda p=prior: p.log_prob(z.flatten(0, 1), context), (k * b,),
                         "[k*B]: log p(z) per latent")
            self.checked(who, f"sample({b})", lambda p=prior: p.sample(b, batch.context), (b, *self.latent),
                         "[n, *latent.shape]")
        self.kl(posterior)
        if self.combo.schedule != "joint" and model.prior.prior_latents.source == "mode":
            self.checked(encoder, "posterior.mode()", posterior.mode, (b, *self.latent), "[B, *latent.shape]")
        self.samples(b)
        self.objective_losses()

    def who(self, slot: str) -> str:
        """A slot's part and the plugin it comes from, as the one-line errors name them."""
        entry = self.combo.parts[slot]
        return f"{slot} {entry.name!r} (plugin {entry.plugin!r})"

    def fail(self, who: str, what: str) -> None:
        raise ProbeError(f"probe batch: {who}: {what}")

    def call(self, who: str, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()``; an exception it raises becomes one line naming the part that raised it."""
        try:
            return fn()
        except ProbeError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ProbeError(f"probe batch: {who}: {what} failed ({type(exc).__name__}: {first})") from exc

    def expect(self, who: str, what: str, value: Any, shape: tuple[int, ...], meaning: str) -> Tensor:
        """``value`` must be a tensor of exactly ``shape`` (``meaning`` spells it) and finite."""
        if not isinstance(value, Tensor):
            self.fail(who, f"{what} returned a {type(value).__name__}, not a tensor of shape {shown(shape)}")
        if tuple(value.shape) != shape:
            self.fail(who, f"{what} has shape {shown(value.shape)}; expected {shown(shape)} ({meaning})")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            self.fail(who, f"{what} is not finite ({bad} of {value.numel()} values are NaN or infinite)")
        return value

    def checked(self, who: str, what: str, fn: Callable[[], Any], shape: tuple[int, ...], meaning: str) -> Tensor:
        return self.expect(who, what, self.call(who, what, fn), shape, meaning)

    def leading(self, who: str, what: str, value: Any, n: int, meaning: str) -> None:
        if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != n:
            got = shown(value.shape) if isinstance(value, Tensor) else f"a {type(value).__name__}"
            self.fail(who, f"{what} is {got}; expected {n} ({meaning}) rows first")

    def posterior(self) -> Posterior:
        who, declared = self.who("encoder"), self.combo.parts["encoder"].cls.posterior
        posterior = self.call(who, "forward(x, context)", lambda: self.model.encode(self.batch))
        if not isinstance(posterior, declared):
            self.fail(who, f"forward returned a {type(posterior).__name__}, not the {declared.__name__} it declares "
                           f"in `posterior` (a vaereg.Posterior)")
        return posterior

    def decode(self, inputs: Tensor, context, n: int, meaning: str) -> Tensor:
        """The decoder's likelihood parameters: exactly ``[n, param_channels, H, W]``."""
        likelihood = self.model.likelihood
        channels = self.call(self.who("likelihood"), "param_channels()", likelihood.param_channels)
        shape = (n, channels, *self.image[1:])
        return self.checked(self.who("decoder"), "output", lambda: self.model.decoder(inputs, context), shape,
                            f"[{meaning}, likelihood.param_channels(), H, W]")

    def priors(self) -> list[tuple[str, Prior]]:
        """The prior, and the stand-in that replaces it while the autoencoder trains."""
        found = [(self.who("prior"), self.model.prior)]
        stand_in = self.model.stand_in
        if stand_in is not None:
            found.append((f"stand-in prior {type(stand_in).__name__} of {self.who('prior')}", stand_in))
        return found

    def kl(self, posterior: Posterior) -> None:
        prior = self.model.active_prior
        rule = self.combo.kl.rules.get((type(posterior), type(prior)))
        if rule is None:
            return
        who = f"KL rule ({type(posterior).__name__} || {type(prior).__name__}) (plugin {rule[1]!r})"
        self.checked(who, "KL(q || p)", lambda: self.combo.kl(posterior, prior), (self.batch.x.shape[0], *self.latent),
                     "[B, *latent.shape]: KL per latent dimension")

    def samples(self, n: int) -> None:
        """``VAE.sample``'s path: the active prior's latents through ``embed``, the decoder and
        the likelihood, to images in [0, 1]."""
        model, context = self.model, self.batch.context
        z = model.active_prior.sample(n, context)
        embedded = self.call(self.who("encoder"), "embed(z)", lambda: model.encoder.embed(z, context))
        self.leading(self.who("encoder"), "embed(z)", embedded, n, "n")
        params = self.decode(embedded, context, n, "n")
        who = self.who("likelihood")
        images = self.checked(who, "sample(params)", lambda: model.likelihood.sample(params, context),
                              (n, *self.image), "[n, C, H, W]")
        if images.min() < 0 or images.max() > 1:
            self.fail(who, f"sample(params) has values in [{float(images.min()):g}, {float(images.max()):g}]; "
                           f"images are in [0, 1]")
        mean = self.call(who, "mean(params)", lambda: model.likelihood.mean(params, context))
        if mean is not None:
            self.expect(who, "mean(params)", mean, (n, *self.image), "[n, C, H, W], or None")

    def objective_losses(self) -> None:
        """The objective's loss on the model's terms, and each of its steps' losses: finite
        scalars, the first with ``loss`` among its stats."""
        entry, objective = self.combo.objective, self.objective
        who = f"objective {entry.name!r} (plugin {entry.plugin!r})"
        terms = self.model(self.batch, objective.draws)
        loss, stats = self.call(who, "loss(terms, progress)", lambda: objective.loss(terms, 0.0))
        self.expect(who, "loss(terms, progress)", loss, (), "a scalar")
        if not isinstance(stats, dict) or "loss" not in stats:
            self.fail(who, "loss(terms, progress) returned stats without 'loss'; return {'loss': loss.detach(), ...}")
        for name, value in stats.items():
            self.expect(who, f"stat {name!r}", value, (), "a scalar")
        trained = self.model.stage_parameters(prior=False)
        steps = self.call(who, "steps(model, parameters)", lambda: objective.steps(self.model, trained))
        if not steps:
            self.fail(who, "steps(model, parameters) returned no step; return at least one vaereg.Step")
        for step in steps:
            what = f"step {step.name!r}'s loss"
            self.expect(who, what, self.call(who, what, lambda s=step: s.loss(terms, 0.0))[0], (), "a scalar")
