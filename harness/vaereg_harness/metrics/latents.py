"""How the model uses its latent: KL per level and active units (closed-form KL), codebook
perplexity and usage (discrete codes), reduced from the shared evaluation pass."""

from __future__ import annotations

import json

from torch import Tensor

from vaereg.codes import codebook_stats
from vaereg.combo import Combo
from vaereg.data import Dataset
from vaereg.metrics import Column, Metric, Scoring
from vaereg.objectives import kl_per_level
from vaereg.specs import LatentSpec

ACTIVE_KL = 0.01  # nats: a latent dimension whose mean KL exceeds this is active (Burda et al. 2016)


def latent_usage(latent: LatentSpec, kl: Tensor) -> tuple[list[float], int]:
    """Mean KL per level (z_1 first) and the number of active dimensions, from the mean KL per
    dimension ``[size]`` over the test split."""
    return kl_per_level(latent, kl[None])[0].tolist(), int((kl > ACTIVE_KL).sum().item())


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
        return {"kl_per_level": json.dumps(latent_usage(scoring.model.combo.latent, kl)[0])}


class ActiveUnits(Metric):
    """Latent dimensions the model uses: those whose mean KL exceeds 0.01 nats (null without a
    closed-form KL)."""

    columns = (
        Column("active_units", int, "dimensions", None, f"latent dimensions whose mean KL exceeds {ACTIVE_KL} nats",
               shown=False),
    )

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        kl = scoring.evaluation.kl
        if kl is None:
            return {}
        return {"active_units": latent_usage(scoring.model.combo.latent, kl)[1]}


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
