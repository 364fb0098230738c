"""Disentanglement metrics on data sets with ground-truth factors: the beta-VAE score (Higgins et
al. 2017), the FactorVAE score (Kim & Mnih 2018), MIG (Chen et al. 2018), SAP (Kumar et al. 2018)
and DCI (Eastwood & Williams 2018).

The estimators are pure functions of posterior-mean codes ``[N, D]`` (float) and factors
``[N, F]`` (int, values ``0..size-1``), taking a ``numpy.random.Generator`` where they draw; the
``Metric`` classes encode a data set's pool (train and test splits, with their factors) once with
``posterior_means`` and draw from the stream ``stream_seed(seed, "metric", name)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, NamedTuple

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score
from sklearn.tree import DecisionTreeClassifier

from vaereg.combo import Combo
from vaereg.config import Range
from vaereg.data import Dataset
from vaereg.metrics import Column, Metric, Scoring
from vaereg.parts import Posterior
from vaereg_harness.launch.distributed import seeded, stream_seed
from vaereg_harness.metrics.encodings import posterior_means

# ---------------------------------------------------------------------------- estimators


def _checked(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, factors = np.asarray(codes, dtype=np.float64), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"codes {codes.shape} and factors {factors.shape} must be [N, D] and [N, F] with the same N")
    if codes.shape[1] < 2 or factors.shape[1] < 1:
        raise ValueError(f"need at least 2 code dimensions and 1 factor, got {codes.shape[1]} and {factors.shape[1]}")
    return codes, factors.astype(np.int64)


def _seed(rng: np.random.Generator) -> int:
    """A ``random_state`` for scikit-learn (below 2**32) from ``rng``."""
    return int(rng.integers(2**32))


def _split(n: int, train: int, test: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint random train and test rows: ``train`` and ``test`` of them, scaled down in
    proportion when ``n`` holds fewer than ``train + test``."""
    if train + test > n:
        test = max(1, round(n * test / (train + test)))
        train = n - test
    order = rng.permutation(n)
    return order[test:test + train], order[:test]


def _top_two_gap(scores: np.ndarray) -> np.ndarray:
    """Per column of ``scores`` ``[D, F]``: the largest value minus the second largest."""
    ranked = np.sort(scores, axis=0)
    return ranked[-1] - ranked[-2]


def discretised(codes: np.ndarray, bins: int) -> np.ndarray:
    """Each code dimension's bin ``[N, D]`` among ``bins`` equal-width bins over its range."""
    low, high = codes.min(0), codes.max(0)
    width = np.where(high > low, (high - low) / bins, 1.0)
    return np.clip(((codes - low) / width).astype(np.int64), 0, bins - 1)


def mutual_information_matrix(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> np.ndarray:
    """Empirical mutual information I(z_d; v_k) in nats ``[D, F]`` between each code dimension,
    discretised into ``bins`` equal-width bins, and each factor (sklearn ``mutual_info_score``):
    the plug-in estimator of Chen et al. (2018), sec. 4.1, as commonly used."""
    codes, factors = _checked(codes, factors)
    binned = discretised(codes, bins)
    return np.array([[mutual_info_score(factors[:, k], binned[:, d]) for k in range(factors.shape[1])]
                     for d in range(codes.shape[1])])


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> float:
    """Mutual information gap (Chen et al. 2018, eq. 6): over the factors, the mean of
    (I(z_j; v_k) - I(z_l; v_k)) / H(v_k) for the two code dimensions j, l most informative about
    v_k, with the mutual information of ``mutual_information_matrix`` (``bins`` equal-width bins
    per dimension) and the factor's empirical entropy. A factor constant over the data (entropy
    0) is left out of the mean."""
    codes, factors = _checked(codes, factors)
    entropy = np.array([mutual_info_score(f, f) for f in factors.T])
    varied = entropy > 0
    if not varied.any():
        raise ValueError("every factor is constant over the data; MIG needs a factor that varies")
    gaps = _top_two_gap(mutual_information_matrix(codes, factors[:, varied], bins))
    return float(np.mean(gaps / entropy[varied]))


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """The mean over the classes present in ``truth`` of the fraction of that class predicted right."""
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in np.unique(truth)]))


def sap_scores(train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray,
               test_factors: np.ndarray, random_state: int = 0) -> np.ndarray:
    """The SAP score matrix ``[D, F]`` (Kumar et al. 2018, sec. 3): entry (d, k) is the balanced
    accuracy on the test rows of a threshold classifier predicting discrete factor k from code
    dimension d alone. The thresholds are a decision tree's on the one dimension, fitted to the
    train rows with up to K leaves for a factor of K values (K - 1 thresholds; the paper fits them
    on the test rows). An inactive dimension gets no special case: it scores about 1 / K."""
    train_codes, train_factors = _checked(train_codes, train_factors)
    test_codes, test_factors = _checked(test_codes, test_factors)
    scores = np.empty((train_codes.shape[1], train_factors.shape[1]))
    for k in range(train_factors.shape[1]):
        values = len(np.unique(train_factors[:, k]))
        for d in range(train_codes.shape[1]):
            tree = DecisionTreeClassifier(max_leaf_nodes=max(2, values), random_state=random_state)
            tree.fit(train_codes[:, d:d + 1], train_factors[:, k])
            scores[d, k] = balanced_accuracy(test_factors[:, k], tree.predict(test_codes[:, d:d + 1]))
    return scores


def sap_from_scores(scores: np.ndarray) -> float:
    """SAP (Kumar et al. 2018, sec. 3): the mean over factors of the gap between the two highest
    entries of the factor's column of the score matrix ``[D, F]``."""
    return float(np.mean(_top_two_gap(np.asarray(scores, dtype=np.float64))))


def sap(codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator, train_size: int = 4000,
        test_size: int = 1000) -> float:
    """SAP of ``sap_scores`` fitted on ``train_size`` random rows and scored on ``test_size``
    others."""
    codes, factors = _checked(codes, factors)
    train, test = _split(len(codes), train_size, test_size, rng)
    return sap_from_scores(sap_scores(codes[train], factors[train], codes[test], factors[test], _seed(rng)))


class DCI(NamedTuple):
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018)."""

    disentanglement: float
    completeness: float
    informativeness: float


def _entropy(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """Entropy in base ``base`` of the distributions along ``axis`` of ``p`` (0 log 0 = 0)."""
    logs = np.log(np.where(p > 0, p, 1.0)) / np.log(base)
    return -(p * logs).sum(axis)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """Disentanglement and completeness (Eastwood & Williams 2018, sec. 2) from the importance
    matrix R ``[D, F]`` (|importance| of code dimension d for predicting factor k):

    - disentanglement: sum_d rho_d (1 - H_F(P_d.)), P_dk = R_dk / sum_k R_dk, rho_d = sum_k R_dk / sum R
      (a dimension of no importance has weight 0);
    - completeness: mean_k (1 - H_D(P~_.k)), P~_dk = R_dk / sum_d R_dk,

    with entropies in base F and D, so each lies in [0, 1]."""
    importance = np.abs(np.asarray(importance, dtype=np.float64))
    dims, count = importance.shape
    if dims < 2 or count < 2:
        raise ValueError(f"DCI needs at least 2 code dimensions and 2 factors, got an importance matrix {dims}x{count}")
    if not (importance.sum(0) > 0).all():
        raise ValueError("DCI needs every factor to have some importance; a column of the importance matrix is zero")
    rows = importance.sum(1)
    used = rows > 0
    per_dim = 1 - _entropy(importance[used] / rows[used, None], count, axis=1)
    disentanglement = float(np.sum(rows[used] / rows.sum() * per_dim))
    completeness = float(np.mean(1 - _entropy(importance / importance.sum(0), dims, axis=0)))
    return disentanglement, completeness


def dci(codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator, train_size: int = 4000,
        test_size: int = 1000, trees: int = 10, depth: int = 12) -> DCI:
    """DCI (Eastwood & Williams 2018) with one random-forest classifier per factor (the paper's
    random forest; ``trees`` trees of at most ``depth`` levels, every dimension considered at each
    split, so importance goes to the dimensions a split uses) fitted on ``train_size`` random
    rows: R is the forests' impurity importance ``[D, F]``, and informativeness the forests' mean
    accuracy on ``test_size`` other rows."""
    codes, factors = _checked(codes, factors)
    train, test = _split(len(codes), train_size, test_size, rng)
    importance = np.empty((codes.shape[1], factors.shape[1]))
    accuracy = []
    for k in range(factors.shape[1]):
        forest = RandomForestClassifier(trees, max_depth=depth, max_features=None, random_state=_seed(rng))
        forest.fit(codes[train], factors[train, k])
        importance[:, k] = forest.feature_importances_
        accuracy.append(forest.score(codes[test], factors[test, k]))
    return DCI(*dci_from_importance(importance), float(np.mean(accuracy)))


def _partners(factors: np.ndarray, anchors: np.ndarray, fixed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each anchor row ``anchors[..., i]`` and factor ``fixed[...]``, a uniformly drawn row of
    ``factors`` with the same value of that factor (possibly the anchor itself)."""
    partners = np.empty_like(anchors)
    for k in np.unique(fixed):
        order = np.argsort(factors[:, k], kind="stable")
        ordered = factors[order, k]
        chosen = fixed == k
        values = factors[anchors[chosen], k]
        start = np.searchsorted(ordered, values, "left")
        count = np.searchsorted(ordered, values, "right") - start
        partners[chosen] = order[start + (rng.random(values.shape) * count).astype(np.int64)]
    return partners


def betavae_score(codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator, pairs: int = 64,
                  train_points: int = 1000, eval_points: int = 500) -> float:
    """The beta-VAE score (Higgins et al. 2017, sec. 3 and appendix A.4) over a pool of codes and
    factors: each point fixes a factor k (uniformly) and averages |z_1 - z_2| over ``pairs``
    pairs of pool rows sharing k's value (row 1 uniform over the pool, row 2 uniform among the
    rows with its value of k); a multinomial logistic regression (sklearn, L2, C = 1) learns k
    from ``train_points`` such points, and the score is its accuracy on ``eval_points`` others."""
    codes, factors = _checked(codes, factors)
    total = train_points + eval_points
    fixed = rng.integers(factors.shape[1], size=total)
    anchors = rng.integers(len(codes), size=(total, pairs))
    partners = _partners(factors, anchors, np.broadcast_to(fixed[:, None], anchors.shape), rng)
    points = np.abs(codes[anchors] - codes[partners]).mean(1)
    classifier = LogisticRegression(max_iter=5000, random_state=_seed(rng))
    classifier.fit(points[:train_points], fixed[:train_points])
    return float(classifier.score(points[train_points:], fixed[train_points:]))


def factorvae_score(codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator, batch: int = 64,
                    train_votes: int = 800, eval_votes: int = 400, prune_variance: float = 0.05) -> float:
    """The FactorVAE score (Kim & Mnih 2018, sec. 4) over a pool of codes and factors: each code
    dimension is divided by its standard deviation over the pool, and dimensions whose variance
    over the pool is at most ``prune_variance`` (collapsed; before dividing) are left out. Each vote
    fixes a factor k (uniformly) and a value of it (that of a uniform pool row), draws ``batch``
    pool rows with that value, and votes for the dimension of least variance over them; the
    majority-vote classifier dimension -> factor of ``train_votes`` votes is scored by its
    accuracy on ``eval_votes`` others. 0 when every dimension is collapsed."""
    codes, factors = _checked(codes, factors)
    variance = codes.var(0)
    active = variance > prune_variance
    if not active.any():
        return 0.0
    scaled = codes[:, active] / np.sqrt(variance[active])
    total = train_votes + eval_votes
    fixed = rng.integers(factors.shape[1], size=total)
    anchors = rng.integers(len(codes), size=total)
    members = _partners(factors, np.broadcast_to(anchors[:, None], (total, batch)),
                        np.broadcast_to(fixed[:, None], (total, batch)), rng)
    voted = scaled[members].var(1).argmin(1)
    counts = np.zeros((scaled.shape[1], factors.shape[1]), dtype=np.int64)
    np.add.at(counts, (voted[:train_votes], fixed[:train_votes]), 1)
    majority = counts.argmax(1)
    return float(np.mean(majority[voted[train_votes:]] == fixed[train_votes:]))


# ---------------------------------------------------------------------------- metrics


def factor_pool(scoring: Scoring) -> tuple[np.ndarray, np.ndarray]:
    """The posterior means ``[N, D]`` and factors ``[N, F]`` of every image of the data set (train
    split, then test split), encoded once per run for all its metrics (``Scoring.shared``). A
    binarized data set's train split is binarized once, on the stream ``(seed, "metric",
    "factor-pool")``, as training binarized it."""
    def encode() -> tuple[np.ndarray, np.ndarray]:
        data, model = scoring.data, scoring.model
        labels = (None, None) if not data.spec.classes else (data.train_labels, data.test_labels)
        with seeded(scoring.seed, "metric", "factor-pool"):
            train = posterior_means(model, data, data.train, labels=labels[0], train=data.binarize)
        test = posterior_means(model, data, data.test, labels=labels[1])
        return torch.cat([train, test]).numpy(), torch.cat([data.factors.train, data.factors.test]).numpy()

    return scoring.shared("factor-pool", encode)


class FactorMetric(Metric):
    """A disentanglement metric: it scores the posterior means of a continuous latent vector
    against a data set's ground-truth factors."""

    #: The metric's registered name, which keys its random stream.
    name: ClassVar[str]

    def mismatch(self, data: Dataset, combo: Combo) -> str | None:
        if getattr(data, "factors", None) is None:
            return "needs ground-truth factors (a data set such as shapes)"
        latent = combo.latent
        if latent.kind != "continuous" or len(latent.shape) != 1:
            return f"needs a continuous latent vector with a posterior mean, got a {latent.describe()}"
        posterior = combo.parts["encoder"].cls.posterior
        if posterior.mode is Posterior.mode:
            return f"needs a continuous latent vector with a posterior mean; a {posterior.__name__} has none"
        if latent.size < 2 or len(data.factors.names) < 2:
            return (f"needs at least 2 latent dimensions and 2 factors, got {latent.size} and "
                    f"{len(data.factors.names)}")
        return None

    def rng(self, scoring: Scoring) -> np.random.Generator:
        return np.random.default_rng(stream_seed(scoring.seed, "metric", self.name))


@dataclass
class MIGConfig:
    bins: Annotated[int, Range(2, 1000)] = 20  # equal-width bins per code dimension


class MIG(FactorMetric):
    """Mutual information gap (Chen et al. 2018) of the posterior means over the data set."""

    Config = MIGConfig
    name = "mig"
    columns = (
        Column("mig", float, "", True, "mutual information gap: over the factors, the mean gap between the two code "
               "dimensions most informative about it, over its entropy (Chen et al. 2018)", heading="MIG",
               format=".3f"),
    )

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        return {"mig": mig(*factor_pool(scoring), self.config.bins)}


@dataclass
class SAPConfig:
    train_images: Annotated[int, Range(10, 1_000_000)] = 4000  # images the thresholds are fitted on
    test_images: Annotated[int, Range(10, 1_000_000)] = 1000  # images the accuracies are measured on


class SAP(FactorMetric):
    """Separated attribute predictability (Kumar et al. 2018) of the posterior means."""

    Config = SAPConfig
    name = "sap"
    columns = (
        Column("sap", float, "fraction", True, "separated attribute predictability: over the factors, the gap in "
               "balanced accuracy between the two code dimensions that best predict it alone (Kumar et al. 2018)",
               heading="SAP", format=".3f"),
    )

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        config = self.config
        return {"sap": sap(*factor_pool(scoring), self.rng(scoring), config.train_images, config.test_images)}


@dataclass
class DCIConfig:
    train_images: Annotated[int, Range(10, 1_000_000)] = 4000  # images the forests are fitted on
    test_images: Annotated[int, Range(10, 1_000_000)] = 1000  # images informativeness is measured on
    trees: Annotated[int, Range(1, 1000)] = 10  # trees per factor's random forest
    depth: Annotated[int, Range(1, 64)] = 12  # the trees' most levels


class DCIMetric(FactorMetric):
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018) of the
    posterior means, from random forests' importances."""

    Config = DCIConfig
    name = "dci"
    columns = (
        Column("dci_disentanglement", float, "", True, "DCI disentanglement: importance-weighted mean over code "
               "dimensions of 1 - entropy of the factors it predicts (Eastwood & Williams 2018)", heading="DCI-D",
               format=".3f"),
        Column("dci_completeness", float, "", True, "DCI completeness: mean over factors of 1 - entropy of the code "
               "dimensions that predict it", heading="DCI-C", format=".3f"),
        Column("dci_informativeness", float, "fraction", True, "DCI informativeness: the random forests' mean test "
               "accuracy predicting each factor from the code", heading="DCI-I", format=".3f"),
    )

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        config = self.config
        scores = dci(*factor_pool(scoring), self.rng(scoring), config.train_images, config.test_images, config.trees,
                     config.depth)
        return {"dci_disentanglement": scores.disentanglement, "dci_completeness": scores.completeness,
                "dci_informativeness": scores.informativeness}


@dataclass
class BetaVAEConfig:
    pairs: Annotated[int, Range(1, 10_000)] = 64  # pairs averaged into one point
    train_points: Annotated[int, Range(10, 1_000_000)] = 1000  # points the classifier is fitted on
    eval_points: Annotated[int, Range(10, 1_000_000)] = 500  # points it is scored on


class BetaVAEScore(FactorMetric):
    """The beta-VAE score (Higgins et al. 2017) of the posterior means over the data set."""

    Config = BetaVAEConfig
    name = "betavae"
    columns = (
        Column("betavae", float, "fraction", True, "beta-VAE score: accuracy of a linear classifier naming the "
               "factor two images share from their codes' mean absolute difference (Higgins et al. 2017)",
               heading="beta-VAE", format=".3f"),
    )

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        config = self.config
        return {"betavae": betavae_score(*factor_pool(scoring), self.rng(scoring), config.pairs,
                                         config.train_points, config.eval_points)}


@dataclass
class FactorVAEConfig:
    batch: Annotated[int, Range(2, 10_000)] = 64  # images sharing a factor's value per vote
    train_votes: Annotated[int, Range(10, 1_000_000)] = 800  # votes the majority classifier counts
    eval_votes: Annotated[int, Range(10, 1_000_000)] = 400  # votes it is scored on
    prune_variance: Annotated[float, Range(0.0, None)] = 0.05  # dimensions of at most this variance are collapsed


class FactorVAEScore(FactorMetric):
    """The FactorVAE score (Kim & Mnih 2018) of the posterior means over the data set."""

    Config = FactorVAEConfig
    name = "factorvae"
    columns = (
        Column("factorvae", float, "fraction", True, "FactorVAE score: accuracy of a majority vote naming the "
               "factor held fixed from the normalised code dimension of least variance (Kim & Mnih 2018)",
               heading="FactorVAE", format=".3f"),
    )

    def compute(self, scoring: Scoring) -> dict[str, int | float | str | None]:
        config = self.config
        return {"factorvae": factorvae_score(*factor_pool(scoring), self.rng(scoring), config.batch,
                                             config.train_votes, config.eval_votes, config.prune_variance)}
