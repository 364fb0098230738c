"""Conditioning on a class label: it reaches the parts, the NLL is -log p(x | y), samples are
drawn per class, and a data set without labels is a usage error."""

import math

import pytest
import torch
from PIL import Image

from tests.conftest import vaereg_cli
from vaereg import Context
from vaereg.combo import resolve
from vaereg.model import VAE, Batch
from vaereg.objectives import importance_nll
from vaereg_harness.store.results import read_results

CONDITIONAL = ["gaussian", "gaussian-mlp", "hierarchical", "nvae", "vq", "vq+pixelcnn"]


@pytest.fixture(scope="module")
def labelled(digits):
    return digits.conditioned("label")


@pytest.mark.parametrize("text", CONDITIONAL)
def test_the_label_changes_the_likelihood_and_the_samples(labelled, text):
    model = VAE(resolve(text, labelled.spec)).eval()
    model.prior_trained = True  # score with the prior itself, a PixelCNN included
    x = labelled.to_model(labelled.test[:4], train=False)
    nll = [importance_nll(model, Batch(x, Context(label=torch.full((4,), y))), 4, 4) for y in (0, 1)]
    assert torch.isfinite(nll[0]).all() and not torch.allclose(nll[0], nll[1])
    torch.manual_seed(0)
    a = model.sample(3, Context(label=torch.zeros(3, dtype=torch.long)))
    torch.manual_seed(0)
    b = model.sample(3, Context(label=torch.full((3,), 7)))
    assert not torch.equal(a, b)


def test_a_conditional_model_needs_the_label(labelled):
    model = VAE(resolve("gaussian", labelled.spec))
    with pytest.raises(Exception, match="conditioned on a class label"):
        model(Batch(labelled.to_model(labelled.test[:2], train=False)))


def test_conditioning_on_an_unlabelled_folder_exits_2_with_one_line(tmp_path):
    for i in range(12):
        Image.new("L", (6, 6), color=20 * i).save(tmp_path / f"{i}.png")
    proc = vaereg_cli("eval", "--combo", "gaussian", "--condition", "label", "--dataset", f"folder:{tmp_path}",
                      cwd=tmp_path, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "has no labels" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_eval_with_condition_label_writes_a_conditional_row_and_samples_per_class(tmp_path):
    vaereg_cli("eval", "--combo", "gaussian", "--condition", "label", "--epochs", "1", "--iw-samples", "8",
               "--fid-samples", "200", "--quiet", cwd=tmp_path)
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert row["condition"] == "label" and math.isfinite(row["nll_nats"])
    assert 0 <= row["condition_accuracy"] <= 1
    grid = Image.open(tmp_path / row["samples_png"])
    assert grid.size == (8 * 33 + 1, 10 * 33 + 1)  # 8 samples of each of the 10 classes, one row per class
    ckpt = tmp_path / row["samples_png"].replace("samples.png", "checkpoint.pt")
    vaereg_cli("sample", str(ckpt), "--label", "3", "-n", "16", "-o", "g.png", cwd=tmp_path)
    assert Image.open(tmp_path / "g.png").size == (4 * 33 + 1, 4 * 33 + 1)
    proc = vaereg_cli("sample", str(ckpt), "--label", "10", "-o", "h.png", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "give 0..9" in proc.stderr and not (tmp_path / "h.png").exists()
