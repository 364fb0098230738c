"""The metric contract: a metric declares the result columns it fills (name, type, unit,
direction) and computes them from a trained model, the test data and, where it wants them,
samples. Every metric of a run receives the same ``Scoring``: the model, the data, the values
of the one evaluation pass over the test images, and one shared draw of samples.

A minimal metric::

    class MeanPosterior(Metric):
        columns = (Column("posterior_mean", float, "", None, "mean of the posterior means"),)

        def compute(self, scoring):
            ...
            return {"posterior_mean": value}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import Tensor

from vaereg.errors import VaeregError
from vaereg.parts import NoOptions

if TYPE_CHECKING:
    from vaereg.combo import Combo
    from vaereg.data import Dataset
    from vaereg.model import VAE

COLUMN_TYPES = (int, float, str)
T = TypeVar("T")

#: Images sampled from the model ``[n, C, H, W]`` in [0, 1] on the CPU, and their class labels
#: ``[n]`` (None for an unconditional model).
Samples = tuple[Tensor, Tensor | None]


@dataclass(frozen=True)
class Column:
    """One result column a metric fills; the results store, ``vaereg results`` and the report
    extend from these declarations."""

    #: The column's name in the results store, unique among every metric's and the row's own.
    name: str
    #: ``int``, ``float`` or ``str`` (the Parquet type follows; a value may always be None).
    type: type
    #: What a value counts: ``"nats"``, ``"bits/dim"``, ``"s"``; empty for a plain number or text.
    unit: str = ""
    #: True: larger is better (``vaereg results --sort`` puts it first); False: smaller is
    #: better; None: not a score (a count, a setting, a note).
    higher_is_better: bool | None = None
    #: One sentence on what the value is.
    description: str = ""
    #: Heading in tables (``vaereg results``, the report's leaderboard); empty: the name.
    heading: str = ""
    #: Format spec of a value in tables, e.g. ``".2f"``; empty: ``".4g"`` for a float, ``str`` otherwise.
    format: str = ""
    #: Whether tables show the column; the store always records it.
    shown: bool = True


@dataclass(frozen=True)
class EvaluationPass:
    """What the one evaluation pass over the scored test images yields, over every process, in
    test-split order (``Scoring.test.test``). Image ``n`` is encoded once; its draws come from
    the stream of the pass that scored it, so the values repeat for a checkpoint and seed."""

    #: ``[N]`` float64, nats: the negative ELBO of each image, from one posterior draw; None when
    #: the model has no density (``no_density``).
    nelbo: Tensor | None
    #: ``[N]`` float64, nats: -log p(x) of each image (-log p(x | y) when conditioned on labels),
    #: importance-sampled with ``iw_samples`` draws from q(z | x); a bound for a point mass over
    #: codes; None when the model has no density.
    nll: Tensor | None
    #: Draws per image behind ``nll``: 1 for a point-mass (deterministic) posterior.
    iw_samples: int
    #: ``[latent.size]`` float64, nats: the closed-form KL(q || p) per latent dimension
    #: (flattened, z_1's first) averaged over the images; None when the pair has no closed form.
    kl: Tensor | None
    #: ``[N, *latent.shape]`` int64: the code indices of one draw per image, for a point-mass
    #: posterior over discrete codes (VQ); None otherwise.
    codes: Tensor | None
    #: Seconds the pass took.
    seconds: float
    #: Why the model has no normalised density to score (``Combo.no_density``: a deterministic
    #: encoder into a continuous latent, a likelihood that is a reconstruction score); None when
    #: it has one.
    no_density: str | None = None
    #: ``[N]`` float64, nats: the rate R = KL(q(z | x) || p(z)) of each image (Alemi et al. 2018,
    #: sec. 2): closed form where the pair has one, else the estimate log q - log p of the draw
    #: behind ``nelbo``; ``nelbo = rate + distortion``. None when the model has no density.
    rate: Tensor | None = None
    #: ``[N]`` float64, nats: the distortion D = -log p(x | z) of each image at the draw behind
    #: ``nelbo`` (Alemi et al. 2018, sec. 2). None when the model has no density.
    distortion: Tensor | None = None

    @property
    def nelbo_nats(self) -> float | None:
        """The negative ELBO averaged over the images (None without a density)."""
        return None if self.nelbo is None else self.nelbo.mean().item()

    @property
    def nll_nats(self) -> float | None:
        """The NLL averaged over the images (None without a density)."""
        return None if self.nll is None else self.nll.mean().item()


@dataclass
class Scoring:
    """What ``Metric.compute`` receives: one per evaluated run, shared by all its metrics. The
    harness builds it after training, runs the evaluation pass and the draw of samples on every
    process, then calls each metric's ``compute`` on one process (rank 0 under torchrun)."""

    #: The trained model, in eval mode, on ``device``; call it under ``torch.no_grad()``.
    model: VAE
    #: The whole data set as the model saw it (train split, labels, ``factors`` where a data set
    #: has ground-truth factors: ``getattr(data, "factors", None)``).
    data: Dataset
    #: ``data`` restricted to the scored test images (``--eval-images``): ``test.test`` (and
    #: ``test.test_labels``) are exactly the images ``evaluation`` scored.
    test: Dataset
    #: Where ``model`` lives; put batches there.
    device: torch.device
    #: The run's seed: draw any randomness from it so a score repeats for a checkpoint and seed.
    seed: int
    #: The values of the shared evaluation pass over ``test.test``.
    evaluation: EvaluationPass
    #: ``draw(n)`` samples ``n`` images from the model (on every process; the harness's
    #: ``draw_samples``). Metrics call ``samples`` instead, which draws once for all of them.
    draw: Callable[[int], Samples] = field(repr=False)
    #: How many samples the run draws: the most any of its metrics declares in ``sample_count``.
    sample_count: int = 0
    #: Seconds the shared draw took (None until it happened).
    sample_seconds: float | None = field(default=None, init=False)
    _drawn: Samples | None = field(default=None, init=False, repr=False)
    _shared: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def shared(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()``, called once per run for every metric that asks under ``key``: what
        several metrics reduce (the posterior means of a data set) is computed once."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    def samples(self, n: int) -> Samples:
        """The first ``n`` images (and labels) of the one draw of ``sample_count`` samples that
        every metric of the run shares; drawn on the first call. Asking for more than
        ``sample_count`` is an error: declare the number in ``Metric.sample_count``."""
        if n > self.sample_count:
            raise VaeregError(f"a metric asked for {n} samples but the run draws {self.sample_count}; return {n} "
                              f"from its sample_count so the shared draw holds them")
        if self._drawn is None:
            began = time.perf_counter()
            self._drawn = self.draw(self.sample_count)
            self.sample_seconds = time.perf_counter() - began
        images, labels = self._drawn
        return images[:n], None if labels is None else labels[:n]


class Metric:
    """A metric plugin, built with an instance of its ``Config``. It declares its ``columns``,
    may say why it cannot score a run (``mismatch``) and how many samples it needs
    (``sample_count``), and ``compute`` returns a value (or None) for each of its columns."""

    Config: ClassVar[type] = NoOptions
    #: The result columns this metric fills.
    columns: ClassVar[tuple[Column, ...]] = ()

    def __init__(self, config: object):
        self.config = config

    def mismatch(self, data: Dataset, combo: Combo) -> str | None:
        """Why this metric cannot score a model of ``combo`` on ``data`` (e.g. ``"needs
        ground-truth factors"``), or None when it can. Asked before anything trains: a metric
        added with ``--metrics`` that cannot is a usage error; a default one is left out."""
        return None

    def sample_count(self, scoring: Scoring) -> int:
        """How many samples ``compute`` takes from ``scoring.samples`` (0: none). Asked before
        the shared draw, whose size is the largest count of the run's metrics."""
        return 0

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        """Column name -> value (of the column's declared type, or None); a column left out is None."""
        raise NotImplementedError


def checked_values(name: str, metric: Metric, values: object) -> dict[str, int | float | str | None]:
    """``values`` from the metric called ``name`` when each is a declared column's type (an int
    is taken for a float) or None; otherwise one line naming the metric and the column."""
    if not isinstance(values, dict):
        raise VaeregError(f"metric {name!r} returned a {type(values).__name__} from compute; return a dict of "
                          f"column name -> value")
    declared = {c.name: c for c in metric.columns}
    checked: dict[str, int | float | str | None] = {}
    for key, value in values.items():
        column = declared.get(key)
        if column is None:
            raise VaeregError(f"metric {name!r} returned the undeclared column {key!r}; its columns: "
                              f"{', '.join(declared)}")
        if value is None:
            checked[key] = None
        elif column.type is float and type(value) in (int, float):
            checked[key] = float(value)
        elif type(value) is column.type:
            checked[key] = value
        else:
            raise VaeregError(f"metric {name!r} column {key!r} is declared {column.type.__name__} but compute "
                              f"returned the {type(value).__name__} {str(value)[:40]!r}")
    return checked
