"""How well the model explains the test images: the importance-sampled NLL and the negative
ELBO, both reduced from the shared evaluation pass. They are the model's own, whatever
objective trained it."""

from __future__ import annotations

from vaereg.metrics import Column, Metric, Scoring


class NLL(Metric):
    """-log p(x) per test image, importance-sampled (Burda et al. 2016) with q(z | x) as proposal."""

    columns = (
        Column("nll_nats", float, "nats", False, "-log p(x) per test image by importance sampling (-log p(x | y) "
               "when conditioned on labels); a bound for a point-mass posterior", heading="NLL", format=".2f"),
        Column("nll_bpd", float, "bits/dim", False, "nll_nats in bits per dimension", heading="bits/dim",
               format=".3f"),
        Column("iw_samples", int, "draws", None, "importance samples per image behind nll_nats (1 for a "
               "point-mass posterior)", heading="K"),
        Column("nll_note", str, "", None, "why nll_nats and nelbo_nats are null, when they are", shown=False),
    )

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        evaluation = scoring.evaluation
        if evaluation.no_density:
            return {"nll_note": evaluation.no_density}
        nll = evaluation.nll_nats
        return {"nll_nats": nll, "nll_bpd": scoring.test.spec.bits_per_dim(nll), "iw_samples": evaluation.iw_samples}


class NegativeELBO(Metric):
    """The negative evidence lower bound per test image, from one posterior draw (null with the
    NLL, and for the same reason, when the model has no density)."""

    columns = (
        Column("nelbo_nats", float, "nats", False, "negative ELBO per test image, one posterior draw",
               heading="-ELBO", format=".2f"),
    )

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        return {"nelbo_nats": scoring.evaluation.nelbo_nats}
