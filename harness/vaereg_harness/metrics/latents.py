"""How the model uses its latent: rate and distortion, KL per level and active units (closed-form
KL, or the spread of the posterior means), codebook perplexity and usage (discrete codes),
reduced from the shared evaluation pass."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Literal

from torch import Tensor

from vaereg.codes import codebook_stats
from vaereg.combo import Combo
from vaereg.config import Range
from vaereg.data import Dataset
from vaereg.metrics import Column, Metric, Scoring
from vaereg.objectives import kl_per_level
from vaereg.parts import Posterior
from vaereg.specs import LatentSpec
from vaereg_harness.metrics.encodings import posterior_means

ACTIVE_KL = 0.01  # a dimension whose mean KL (nats) or posterior-mean variance exceeds this is active (Burda et al.)


def code_usage(latent: LatentSpec, indices: Tensor) -> tuple[float, float]:
    """Codebook perplexity and usage, averaged over the code maps of a hierarchy."""
    maps = latent.split(indices)
    stats = [codebook_stats(m, level.codes) for m, level in zip(maps, latent.as_levels(), strict=True)]
    return (sum(s["perplexity"].item() for s in stats) / len(stats),
            sum(s["usage"].item() for s in stats) / len(stats))


class KLPerLevel(Metric):
    """The mean closed-form KL of each latent level (null without a closed-form KL)."""

    columns = (
        Column("kl_per_level", str, "nats", None, "JSON list: mean KL(q || p) per level over the test images, "
               "z_1 first", shown=False),
    )

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        kl = scoring.evaluation.kl
        if kl is None:
            return {}
        return {"kl_per_level": json.dumps(kl_per_level(scoring.model.combo.latent, kl[None])[0].tolist())}


class RateDistortion(Metric):
    """The rate R = KL(q(z | x) || p(z)) and distortion D = -log p(x | z) of the evaluation pass's
    draw, averaged over the test images; the negative ELBO is R + D (Alemi et al. 2018, "Fixing a
    broken ELBO", sec. 2). Null without a density."""

    columns = (
        Column("rate", float, "nats", None, "mean KL(q(z|x) || p(z)) over the test images: closed form where the "
               "pair has one, else one draw's log q - log p", shown=False),
        Column("distortion", float, "nats", None, "mean -log p(x|z) over the test images at one posterior draw",
               shown=False),
    )

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        evaluation = scoring.evaluation
        if evaluation.rate is None or evaluation.distortion is None:
            return {}
        return {"rate": evaluation.rate.mean().item(), "distortion": evaluation.distortion.mean().item()}


@dataclass
class ActiveUnitsConfig:
    """``rule``: "kl" counts the dimensions whose mean closed-form KL over the test images exceeds
    ``threshold`` nats; "variance" those whose posterior mean varies over the test images by more
    than ``threshold``, A_u = Cov_x(E_q(u|x)[u]) > 0.01 in Burda, Grosse & Salakhutdinov 2016,
    sec. 5.2 (the unbiased variance over the N scored images)."""

    rule: Literal["kl", "variance"] = "kl"
    threshold: Annotated[float, Range(0.0, open_low=True)] = ACTIVE_KL


class ActiveUnits(Metric):
    """Latent dimensions the model uses, by ``Config.rule``: mean KL above the threshold (null
    without a closed-form KL), or the variance over the test images of the posterior mean above
    it (Burda et al. 2016; needs a continuous latent)."""

    Config = ActiveUnitsConfig
    columns = (
        Column("active_units", int, "dimensions", None, "latent dimensions counted active by active_units_rule",
               shown=False),
        Column("active_units_rule", str, "", None, "what active_units counts: 'kl>t', dimensions whose mean KL "
               "exceeds t nats, or 'variance>t', those whose posterior mean has variance above t over the test "
               "images (Burda et al. 2016)", shown=False),
    )

    def mismatch(self, data: Dataset, combo: Combo) -> str | None:
        if self.config.rule != "variance":
            return None
        posterior = combo.parts["encoder"].cls.posterior
        if combo.latent.is_codes or posterior.mode is Posterior.mode:
            return (f"rule 'variance' needs a continuous latent whose posterior has a mean, got a "
                    f"{combo.latent.describe()} with a {posterior.__name__} posterior")
        return None

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        rule = f"{self.config.rule}>{self.config.threshold:g}"
        if self.config.rule == "variance":
            test = scoring.test
            means = posterior_means(scoring.model, test, test.test,
                                    labels=test.test_labels if test.spec.classes else None)
            return {"active_units": int((means.var(0) > self.config.threshold).sum()), "active_units_rule": rule}
        kl = scoring.evaluation.kl
        if kl is None:
            return {}
        return {"active_units": int((kl > self.config.threshold).sum()), "active_units_rule": rule}


class Codebook(Metric):
    """Perplexity and usage of the codebook over the test images' codes (one draw)."""

    columns = (
        Column("codebook_perplexity", float, "codes", None, "exp of the entropy of the test images' code use, "
               "averaged over a hierarchy's code maps", shown=False),
        Column("codebook_usage", float, "fraction", None, "fraction of the codebook the test images use",
               shown=False),
    )

    def mismatch(self, data: Dataset, combo: Combo) -> str | None:
        return None if combo.latent.is_codes else f"needs a discrete (code) latent, got a {combo.latent.describe()}"

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        codes = scoring.evaluation.codes
        if codes is None:
            return {}
        perplexity, usage = code_usage(scoring.model.combo.latent, codes)
        return {"codebook_perplexity": perplexity, "codebook_usage": usage}
