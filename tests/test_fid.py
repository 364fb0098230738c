"""FID through torch-fidelity: offline extractor, recorded protocol, cache keys, end to end."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_fidelity
from PIL import Image

from tests.conftest import vaereg_cli
from vaereg_harness.data import Dataset
from vaereg_harness.metrics.classifier import EXTRACTOR, as_uint8, file_hash, load_classifier, weights_hash
from vaereg_harness.metrics.fid import FIDProtocol, ImageSet, protocol_for
from vaereg_harness.store.results import read_results


@pytest.fixture(scope="module")
def protocol(digits, _cache) -> FIDProtocol:
    found = protocol_for(digits, _cache)
    assert isinstance(found, FIDProtocol)
    return found


def test_offline_extractor_is_a_classifier_reaching_90_percent_on_digits(digits, protocol):
    assert protocol.extractor.name == EXTRACTOR
    net = load_classifier(protocol.extractor.weights)
    with torch.no_grad():
        predicted = net(protocol.split("test"))[1].argmax(1)
    assert (predicted == digits.test_labels).float().mean() >= 0.9


def test_fid_of_a_set_against_itself_is_zero(digits, protocol):
    assert abs(protocol.score(digits.to_model(digits.test, train=False))) < 1e-6


def test_noise_is_far_from_the_test_split_and_the_train_split_is_close(protocol):
    noise = torch.rand(1000, 1, 8, 8)
    assert protocol.score(noise) > 10 * protocol.floor
    assert 0 < protocol.floor < 5


def test_fid_equals_a_direct_torch_fidelity_call(digits, protocol):
    torch.manual_seed(1)
    images = (digits.to_model(digits.train[:500], train=False) + 0.1 * torch.randn(500, 1, 8, 8)).clamp(0, 1)
    ours = protocol.score(images)
    direct = torch_fidelity.calculate_metrics(
        input1=ImageSet(as_uint8(images), rgb=False), input2=ImageSet(protocol.split("test"), rgb=False),
        fid=True, feature_extractor=EXTRACTOR, feature_extractor_weights_path=str(protocol.extractor.weights),
        cuda=False, verbose=False, save_cpu_ram=True,
    )["frechet_inception_distance"]
    assert math.isclose(ours, direct, rel_tol=1e-6)
    assert ours > protocol.floor


def test_one_changed_reference_image_changes_the_cache_key(digits, protocol):
    test = digits.test.clone()
    test[17, 0, 3, 3] = (int(test[17, 0, 3, 3]) + 1) % 17
    changed = FIDProtocol(Dataset(digits.spec, digits.train, test, digits.train_labels, digits.test_labels),
                       protocol.extractor, protocol.cache_dir)
    assert changed.cache_key("test") != protocol.cache_key("test")
    assert changed.cache_key("train") == protocol.cache_key("train")
    assert protocol.extractor.digest[:16] in protocol.cache_key("test")  # a new extractor never reuses it


def test_a_data_set_without_labels_gets_no_fid_and_a_note(tmp_path):
    for i in range(12):
        Image.new("L", (6, 6), color=20 * i).save(tmp_path / f"{i}.png")
    proc = vaereg_cli("eval", "--dataset", f"folder:{tmp_path}", "--combo", "gaussian", "--epochs", "1",
                      "--iw-samples", "2", "--quiet", cwd=tmp_path)
    assert "no FID" in proc.stderr and "--inception-weights" in proc.stderr
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert row["fid"] is None and row["fid_floor"] is None and "no labels" in row["fid_note"]


def test_eval_writes_fid_protocol_and_both_grids_per_combo(tmp_path):
    vaereg_cli("eval", "--combo", "gaussian", "--combo", "vq+pixelcnn", "--epochs", "2", "--iw-samples", "8",
               "--fid-samples", "300", "--quiet", "--out", "runs", cwd=tmp_path)
    rows = read_results(tmp_path / "vaereg-results").to_pylist()
    assert sorted(r["combo"] for r in rows) == ["gaussian", "vq+pixelcnn"]
    for row in rows:
        assert row["fid"] > 0 and row["fid_floor"] > 0 and row["fid"] > row["fid_floor"]
        assert row["fid_extractor"].startswith(f"{EXTRACTOR}:") and row["fid_samples"] == 300
        assert row["fid_reference"] == "test:360"
        for key in ("samples_png", "samples_mean_png", "reconstructions_png"):
            path = tmp_path / row[key]
            assert path.is_file() and Path(row[key]).relative_to(tmp_path).parts[0] == "runs"
            assert Image.open(path).size[0] >= 8 * 32
        sampled, mean = (np.asarray(Image.open(tmp_path / row[k])) for k in ("samples_png", "samples_mean_png"))
        assert len(np.unique(sampled)) <= 18 < len(np.unique(mean))  # 17 intensities (and the border) vs means
    assert json.loads(rows[0]["config"])["fid_samples"] == 300
    assert len({r["samples_png"] for r in rows}) == 2


def test_extractor_hash_is_of_the_weights_not_the_file(protocol, tmp_path):
    copy = tmp_path / "renamed.pt"
    torch.save(torch.load(protocol.extractor.weights, weights_only=True), copy)
    assert weights_hash(copy) == protocol.extractor.digest
    assert file_hash(copy) != file_hash(protocol.extractor.weights)  # the archive records its own name


def test_the_classifier_trains_a_fixed_number_of_steps_whatever_the_data_size():
    from vaereg_harness.metrics.classifier import train_classifier

    steps = []
    images = torch.randint(0, 256, (100, 1, 8, 8), dtype=torch.uint8)  # 2 batches of 64 per epoch
    labels = torch.arange(100) % 3
    real = torch.optim.Adam.step

    def counting(self, *args, **kwargs):
        steps.append(1)
        return real(self, *args, **kwargs)

    torch.optim.Adam.step = counting
    try:
        train_classifier(images, labels, steps=5)
        assert len(steps) == 5  # across three epochs, the last cut short
        steps.clear()
        train_classifier(torch.cat([images] * 50), torch.cat([labels] * 50), steps=5)
        assert len(steps) == 5  # fifty times the data: the same budget
    finally:
        torch.optim.Adam.step = real


def test_the_row_records_the_extractor_accuracy_and_the_fid_phases(tmp_path):
    vaereg_cli("eval", "--combo", "gaussian-mlp", "--epochs", "1", "--iw-samples", "2", "--fid-samples", "100",
               "--fid-extractor", "classifier", "--quiet", cwd=tmp_path)
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert row["fid_extractor_accuracy"] >= 0.9 and row["fid_extractor_seconds"] >= 0 and row["fid_seconds"] > 0


def test_insisting_on_inception_without_its_weights_exits_2(tmp_path):
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "empty-hub"))
    proc = vaereg_cli("eval", "--combo", "gaussian", "--fid-extractor", "inception", cwd=tmp_path, env=env,
                      check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "no Inception weights found" in errors[0], proc.stderr
