"""KID, precision/recall and the classifier score: torch-fidelity's values on one shared extraction
of the samples' features, KID's adaptive subset size, the classifier score's closed form."""

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch_fidelity
from torch_fidelity.metric_prc import prc_features_to_metric

from vaereg.metrics import EvaluationPass
from vaereg_harness.launch.distributed import stream_seed
from vaereg_harness.metrics.classifier import EXTRACTOR, ClassifierFeatures, as_uint8, load_classifier
from vaereg_harness.metrics.fid import INCEPTION, Extractor, FIDProtocol, ImageSet, protocol_for
from vaereg_harness.metrics.sample_quality import (
    FID,
    KID,
    ClassAccuracy,
    ClassifierScore,
    PrecisionRecall,
    classifier_score,
)
from vaereg_harness.metrics.scoring import RunScoring

NEW = (KID, PrecisionRecall, ClassifierScore)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the classifier's passes."""


@pytest.fixture(scope="module")
def protocol(digits, _cache) -> FIDProtocol:
    found = protocol_for(digits, _cache)
    assert isinstance(found, FIDProtocol)
    return found


def noisy_train(digits, n: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = digits.to_model(digits.train[:n], train=False)
    return (images + 0.1 * torch.randn(images.shape, generator=generator)).clamp(0, 1)


def scoring_of(digits, images: torch.Tensor, fid, seed: int = 0) -> RunScoring:
    """The run's scoring whose one draw of samples is ``images`` (and their digits' labels)."""
    labels = digits.train_labels[: images.shape[0]]
    empty = torch.zeros(0)
    return RunScoring(model=None, data=digits, test=digits, device=torch.device("cpu"), seed=seed,
                      evaluation=EvaluationPass(empty, empty, 1, None, None, 0.0),
                      draw=lambda n: (images[:n], labels[:n]), sample_count=images.shape[0],
                      config=SimpleNamespace(fid_samples=images.shape[0]), reports=[], fid=fid)


def test_kid_and_prc_equal_a_direct_torch_fidelity_call_and_kid_subsets_fit_360_test_images(digits, protocol):
    images = noisy_train(digits, 1000)
    scoring = scoring_of(digits, images, protocol, seed=7)
    kid, prc = KID(KID.Config()).compute(scoring), PrecisionRecall(PrecisionRecall.Config()).compute(scoring)
    direct = torch_fidelity.calculate_metrics(
        input1=ImageSet(as_uint8(images), rgb=False), input2=ImageSet(protocol.split("test"), rgb=False),
        kid=True, prc=True, feature_extractor=EXTRACTOR, feature_extractor_weights_path=str(protocol.extractor.weights),
        kid_subset_size=360, rng_seed=stream_seed(7, "metric", "kid") % 2**32, cuda=False, verbose=False,
        save_cpu_ram=True,
    )
    assert digits.test.shape[0] == 360 and kid["kid_subset_size"] == 360
    assert math.isclose(kid["kid"], direct["kernel_inception_distance_mean"], rel_tol=1e-6)
    assert math.isclose(kid["kid_std"], direct["kernel_inception_distance_std"], rel_tol=1e-6)
    for ours, theirs in (("precision", "precision"), ("recall", "recall"), ("prc_f_score", "f_score")):
        assert math.isclose(prc[ours], direct[theirs], rel_tol=1e-6, abs_tol=1e-9), ours
    assert prc["prc_neighbourhood"] == 3 and 0 < prc["precision"] < 1 and 0 < prc["recall"] < 1
    assert kid["kid"] > 0  # noisy samples are told apart from the test split


def test_the_samples_features_are_extracted_once_for_every_sample_metric(digits, protocol, monkeypatch):
    fresh = FIDProtocol(protocol.data, protocol.extractor, protocol.cache_dir)
    fresh.split_features("test"), fresh.floor  # the references, from the disk cache
    seen = []
    real = ClassifierFeatures.forward

    def spy(self, images):
        seen.append(images.shape[0])
        return real(self, images)

    monkeypatch.setattr(ClassifierFeatures, "forward", spy)
    images = noisy_train(digits, 1000)
    scoring = scoring_of(digits, images, fresh)
    for cls in (FID, KID, PrecisionRecall, ClassifierScore, ClassAccuracy):
        values = cls(cls.Config()).compute(scoring)
        assert all(v is not None for k, v in values.items() if not k.endswith("note")), (cls, values)
    assert sum(seen) == 1000  # one pass over the draw, in batches
    fresh.score(noisy_train(digits, 1000, seed=2))  # another draw is extracted anew
    assert sum(seen) == 2000


def test_a_splits_features_are_cached_on_disk_under_torch_fidelitys_name(protocol, monkeypatch):
    features = protocol.split_features("test")
    path = protocol.cache_dir / "fidelity" / f"{protocol.cache_key('test')}-{EXTRACTOR}-features-penultimate.pt"
    assert torch.equal(torch.load(path, weights_only=False), features) and features.shape == (360, 64)
    monkeypatch.setattr(ClassifierFeatures, "forward", lambda self, images: pytest.fail("extracted again"))
    again = FIDProtocol(protocol.data, protocol.extractor, protocol.cache_dir).split_features("test")
    assert torch.equal(again, features)


def test_small_draws_shrink_kids_subsets_and_the_prc_neighbourhood(digits, protocol):
    images = noisy_train(digits, 3)
    scoring = scoring_of(digits, images, protocol)
    kid = KID(KID.Config()).compute(scoring)
    prc = PrecisionRecall(PrecisionRecall.Config()).compute(scoring)
    assert kid["kid_subset_size"] == 3 and math.isfinite(kid["kid"])
    assert prc["prc_neighbourhood"] == 2  # the farthest of the two other samples
    direct = prc_features_to_metric(protocol.features(images)["penultimate"], protocol.split_features("test"),
                                    prc_neighborhood=2, verbose=False)
    assert (prc["precision"], prc["recall"]) == (direct["precision"], direct["recall"])


def numpy_score(logits: np.ndarray) -> float:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    p = shifted / shifted.sum(1, keepdims=True)
    marginal = p.mean(0)
    return float(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(marginal)), axis=1))))


def test_the_classifier_score_is_the_inception_score_formula():
    logits = torch.randn(500, 10, generator=torch.Generator().manual_seed(3)) * 3
    assert math.isclose(classifier_score(logits), numpy_score(logits.double().numpy()), rel_tol=1e-12)
    assert 1 < classifier_score(logits) < 10
    same = torch.randn(1, 10).expand(400, 10)
    assert math.isclose(classifier_score(same), 1.0, rel_tol=1e-12)
    confident = 60 * torch.eye(10)[torch.arange(400) % 10]
    assert math.isclose(classifier_score(confident), 10.0, rel_tol=1e-9)


def test_the_classifier_score_of_a_run_reads_the_classifiers_logits(digits, protocol):
    images = noisy_train(digits, 500)
    values = ClassifierScore(ClassifierScore.Config()).compute(scoring_of(digits, images, protocol))
    with torch.no_grad():
        logits = load_classifier(protocol.extractor.weights)(as_uint8(images))[1]
    assert math.isclose(values["classifier_score"], numpy_score(logits.double().numpy()), rel_tol=1e-6)
    assert values["classifier_score"] > 5  # digits: confident and spread over ten classes


def test_without_fid_or_its_classifier_every_new_metric_is_null_with_a_note(digits, tmp_path):
    images = noisy_train(digits, 10)
    inception = FIDProtocol(digits, Extractor(INCEPTION, "2048", Path("absent.pth"), "0" * 64), tmp_path)
    for fid, words in ((None, "--no-fid"), ("no FID: digits has no labels", "no labels")):
        scoring = scoring_of(digits, images, fid)
        for cls in NEW:
            metric = cls(cls.Config())
            (note,) = [c.name for c in cls.columns if c.name.endswith("_note")]
            values = metric.compute(scoring)
            assert words in values[note] and metric.sample_count(scoring) == 0
            assert all(v is None for k, v in values.items() if k != note)
    values = ClassifierScore(ClassifierScore.Config()).compute(scoring_of(digits, images, inception))
    assert values.get("classifier_score") is None and "Inception" in values["classifier_score_note"]
    assert ClassifierScore(ClassifierScore.Config()).sample_count(scoring_of(digits, images, inception)) == 10
