"""A validation split held out of training (``--validation-images``): exactly a fixed part of the
training split, the test split untouched, in the run key, and its negative ELBO logged after
every autoencoder epoch without changing what training does."""

import dataclasses
import json
import tomllib
from collections import Counter

import pytest
import torch

from tests.conftest import vaereg_cli
from vaereg import UsageError
from vaereg.data import Dataset, Factors, check_dataset, dataset_problem
from vaereg.model import Batch
from vaereg.specs import DataSpec
from vaereg_harness.api import RunConfig, TrainConfig, create_model, load_data, plan, train_model
from vaereg_harness.launch import distributed
from vaereg_harness.run import checkpoint
from vaereg_harness.run.trainer import Trainer

HELD = 200
WIDTHS = {"encoder": {"width": 16}, "decoder": {"width": 16}}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for the small models of this module."""


def rows(images: torch.Tensor, labels: torch.Tensor) -> Counter:
    """Each image's bytes with its label, counted."""
    return Counter((bytes(image.numpy()), int(label)) for image, label in zip(images, labels, strict=True))


def test_the_held_out_images_and_the_remaining_ones_are_the_training_split(digits):
    data = digits  # labelled, conditioned or not
    original = rows(data.train, data.train_labels)
    assert len(original) == data.train.shape[0]  # every image distinct: its bytes identify its row
    held = data.hold_out(HELD)
    check_dataset(held, "the held-out digits")
    assert held.validation.shape == (HELD, 1, 8, 8) and held.train.shape[0] == data.train.shape[0] - HELD
    kept, validation = rows(held.train, held.train_labels), rows(held.validation, held.validation_labels)
    assert not set(kept) & set(validation)  # disjoint
    assert kept + validation == original  # together the split, labels in step
    assert torch.equal(held.test, data.test) and torch.equal(held.test_labels, data.test_labels)
    # kept in the split's order, and the same choice from a fresh load
    position = {bytes(image.numpy()): i for i, image in enumerate(data.train)}
    for split in (held.train, held.validation):
        order = [position[bytes(image.numpy())] for image in split]
        assert order == sorted(order)
    again = load_data("digits").hold_out(HELD)
    assert torch.equal(again.validation, held.validation) and torch.equal(again.train, held.train)
    assert data.hold_out(None) is data and held.hold_out(HELD) is held


def test_too_many_held_out_images_is_a_one_line_error(digits):
    with pytest.raises(UsageError, match=r"^--validation-images 1437: the training split of digits has 1437 "
                                         r"images; hold out fewer \(at most 1436\)$"):
        digits.hold_out(1437)


def test_factors_follow_the_training_rows_and_binarized_images_are_stored_binarized():
    n = 40
    values = torch.arange(n) % 4
    images = (values.view(n, 1, 1, 1) % 2 * 255).expand(n, 1, 2, 2).to(torch.uint8).contiguous()
    factors = Factors(("parity", "value"), (2, 4), torch.stack([values % 2, values], 1), torch.zeros(4, 2).long())
    data = Dataset(DataSpec("toy", 1, 2, 2, 2), images, images[:4] // 255, binarize=True, factors=factors)
    held = data.hold_out(10)
    assert dataset_problem(held) is None
    # each kept image is still described by its own factors (pixels are 255 * parity)
    assert torch.equal(held.train[:, 0, 0, 0].long(), held.factors.train[:, 0] * 255)
    assert held.factors.train.shape == (n - 10, 2) and torch.equal(held.factors.test, factors.test)
    # stored as the test split is: binarized (0 and 255 binarize to 0 and 1 whatever the draw), so the
    # lit images kept and held out are the split's 20
    assert set(held.validation.unique().tolist()) == {0, 1}
    lit = int((held.train == 255).all(3).all(2).sum()) + int((held.validation == 1).all(3).all(2).sum())
    assert lit == n // 2


def test_malformed_validation_splits_are_named(digits):
    data = digits.hold_out(HELD)
    cases = {
        "validation has shape [200, 1, 8, 7]": dataclasses.replace(data, validation=data.validation[..., :7]),
        "only train_labels and test_labels are given; give labels for every split or none":
            dataclasses.replace(data, validation_labels=None),
        "validation_labels has shape [199]": dataclasses.replace(data,
                                                                 validation_labels=data.validation_labels[1:]),
        "validation_labels is given without validation images":
            dataclasses.replace(data, validation=None),
        "validation holds the value 200":
            dataclasses.replace(data, validation=torch.full_like(data.validation, 200)),
    }
    for message, malformed in cases.items():
        assert dataset_problem(malformed).startswith(message), (message, dataset_problem(malformed))


def test_the_option_is_in_the_run_key_and_comes_from_files(digits, tmp_path):
    def run(validation=None):
        return plan("gaussian", digits, config=RunConfig(train=TrainConfig(device="cpu", validation_images=validation)),
                    out=tmp_path)

    assert run(HELD).key != run().key and run(HELD).key != run(HELD + 1).key and run(HELD).key == run(HELD).key
    assert "validation_images" not in run().describe()["train"]  # keys and rows of earlier runs are still found
    assert run(HELD).data.train.shape[0] == digits.train.shape[0] - HELD  # the Run trains on the rest

    (tmp_path / "exp.toml").write_text('combo = "gaussian"\nvalidation_images = 500\n')
    printed = vaereg_cli("train", "--config", "exp.toml", "--print-config", cwd=tmp_path).stdout
    assert tomllib.loads(printed)["validation_images"] == 500
    assert run(500).folder.name in printed and run().folder.name not in printed

    refused = vaereg_cli("train", "--combo", "gaussian", "--validation-images", "1437", cwd=tmp_path, check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == ("Error: --validation-images 1437: the training split of digits "
                                                       "has 1437 images; hold out fewer (at most 1436)")


def config(validation: int | None) -> RunConfig:
    return RunConfig(train=TrainConfig(epochs=2, batch_size=128, seed=3, device="cpu", checkpoint_every=0, threads=1,
                                       validation_images=validation))


def records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_the_validation_elbo_is_logged_each_epoch_and_changes_nothing_trained(digits, tmp_path, monkeypatch):
    modes, log = [], Trainer.log

    def log_mode(self, record):  # the mode the model is left in once its epoch's record is made
        modes.append(self.model.training)
        log(self, record)

    monkeypatch.setattr(Trainer, "log", log_mode)
    model = create_model("gaussian", digits, WIDTHS, config(HELD))
    _, path = train_model(model, digits, config(HELD), tmp_path / "a", progress=False)
    logged = [r for r in records(path.parent) if r.get("stage") == "autoencoder"]
    assert [r["epoch"] for r in logged] == [1, 2] and all("validation_elbo" in r for r in logged)
    assert modes == [True, True]  # train mode restored after each validation pass

    # independently: the final checkpoint's one-draw negative ELBO, KL in closed form minus log p(x | z),
    # on the held-out images (digits store 0..16) drawn from the last epoch's stream
    rebuilt = checkpoint.rebuild(checkpoint.load(path)).eval()
    validation = digits.hold_out(HELD).validation
    assert validation.shape[0] == HELD
    with torch.no_grad(), distributed.seeded(3, "validation", 2):
        terms = rebuilt(Batch(validation.float() / 16), 1)
    expected = float((terms.kl.flatten(1).sum(1).double() - terms.log_px[0].double()).mean())
    assert logged[-1]["validation_elbo"] == pytest.approx(expected, abs=1e-5)
    assert logged[0]["validation_elbo"] != pytest.approx(expected, rel=1e-3)  # the first epoch's model differs

    # the same training images without a validation split: the pass is never called, nothing is
    # logged, and the weights are bit-identical (the validation pass changes nothing training does)
    def refused(*_):
        raise AssertionError("the validation pass ran without a validation split")

    monkeypatch.setattr(Trainer, "validation_elbo", refused)
    rest = dataclasses.replace(digits.hold_out(HELD), validation=None, validation_labels=None)
    plain = create_model("gaussian", rest, WIDTHS, config(None))
    _, plain_path = train_model(plain, rest, config(None), tmp_path / "b", progress=False)
    assert not any("validation_elbo" in r for r in records(plain_path.parent))
    for (name, a), (_, b) in zip(model.state_dict().items(), plain.state_dict().items(), strict=True):
        assert torch.equal(a, b) if torch.is_tensor(a) else a == b, name
