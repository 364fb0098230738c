"""The pictures of a trained model against hand computations: traversals move only their own
dimension over the span, from the first test image's posterior mean, along the dimensions of
largest mean KL (or largest variance of the means without a closed form); interpolations run
between two test images' posterior means exactly, the originals at the ends; reconstructions are
the model's for the seed; the factor heatmap draws ``mutual_information_matrix`` of the posterior
means; code maps and hierarchies get None; and ``vaereg eval`` writes them, the row names them and
``vaereg report`` shows them."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import vaereg_cli
from vaereg.combo import resolve
from vaereg.model import VAE
from vaereg_harness.data import load_data
from vaereg_harness.launch.distributed import seeded
from vaereg_harness.metrics.disentanglement import mutual_information_matrix
from vaereg_harness.metrics.encodings import posterior_means
from vaereg_harness.run import checkpoint
from vaereg_harness.run.pictures import (
    DPI,
    PICTURES,
    decode,
    factor_mi,
    factor_mi_matrix,
    heatmap,
    heatmap_size,
    interpolations,
    pictures,
    reconstructions,
    traversals,
)
from vaereg_harness.store.images import tile
from vaereg_harness.store.results import read_results

SHAPES = {"canvas": 16, "positions": 4, "orientations": 4}
CELL = 33  # an 8x8 digit scaled 4x (a 16x16 shape 2x), and its 1-pixel border


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread for this module's small models."""


@pytest.fixture(autouse=True)
def _no_grad():
    """The hand computations need no gradients."""
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def gaussian(digits):
    torch.manual_seed(1)
    return VAE(resolve("gaussian", digits.spec)).eval()


@pytest.fixture(scope="module")
def shapes():
    return load_data("shapes", options=SHAPES)


class Decoded:
    """Records every decoder input of ``model`` while the block runs."""

    def __init__(self, model: VAE):
        self.model, self.inputs = model, []

    def __enter__(self) -> list[torch.Tensor]:
        self.handle = self.model.decoder.register_forward_pre_hook(lambda _, args: self.inputs.append(args[0].clone()))
        return self.inputs

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def test_traversal_rows_move_only_the_top_kl_dimensions_over_the_span(gaussian, digits):
    dims, steps, span = 3, 5, 2.0
    with Decoded(gaussian) as inputs:
        picture = traversals(gaussian, digits, dims=dims, steps=steps, span=span, seed=4)
    (z,) = inputs
    # by hand: KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1 - log s^2) / 2 per dimension, averaged over the images
    x = digits.to_model(digits.test[:256], train=False)
    posterior = gaussian.encoder(x, digits.context(None))
    m, log_s = posterior.mean.double(), posterior.log_std.double()
    kl = (0.5 * (m**2 + (2 * log_s).exp() - 1 - 2 * log_s)).mean(0).numpy()
    chosen = np.argsort(-kl, kind="stable")[:dims]
    assert len(set(np.round(kl[chosen], 6))) == dims  # no ties: the order is the KL's
    base = posterior.mean[0]
    assert z.shape == (dims * steps, base.shape[0])
    for row, d in enumerate(chosen):
        moved = z[row * steps:(row + 1) * steps]
        others = torch.ones(base.shape[0], dtype=torch.bool)
        others[d] = False
        torch.testing.assert_close(moved[:, others], base[others].expand(steps, -1), rtol=0, atol=0)
        assert moved[:, d].tolist() == pytest.approx([-2.0, -1.0, 0.0, 1.0, 2.0], abs=1e-6)
    expected = tile(gaussian.likelihood.mean(gaussian.decoder(z, digits.context(None)), digits.context(None)),
                    cols=steps)
    assert picture.dtype == np.uint8 and picture.shape == (dims * CELL + 1, steps * CELL + 1, 1)
    np.testing.assert_array_equal(picture, expected)


def test_without_a_closed_form_kl_traversals_rank_by_the_variance_of_the_means(digits):
    torch.manual_seed(2)
    model = VAE(resolve("ae", digits.spec)).eval()  # a point-mass posterior: no KL
    with Decoded(model) as inputs:
        traversals(model, digits, dims=4, steps=3, span=1.0, images=100)
    (z,) = inputs
    means = posterior_means(model, digits, digits.test[:100]).numpy()
    chosen = np.argsort(-means.var(0), kind="stable")[:4]
    moved = [int(torch.nonzero(z[3 * r] != torch.from_numpy(means[0]).float()).flatten()[0]) for r in range(4)]
    assert moved == chosen.tolist()


def test_interpolations_run_between_two_test_means_with_the_originals_at_the_ends(gaussian, digits):
    pairs, steps = 3, 4
    with Decoded(gaussian) as inputs:
        picture = interpolations(gaussian, digits, pairs=pairs, steps=steps, seed=7)
    (z,) = inputs
    with seeded(7, "pictures", "interpolations"):
        chosen = torch.randperm(digits.test.shape[0])[:2 * pairs]
    means = posterior_means(gaussian, digits, digits.test[chosen]).float()
    z = z.view(pairs, steps, -1)
    torch.testing.assert_close(z[:, 0], means[:pairs], rtol=0, atol=0)
    torch.testing.assert_close(z[:, -1], means[pairs:], rtol=0, atol=0)
    torch.testing.assert_close(z[:, 1], means[:pairs] * 2 / 3 + means[pairs:] / 3)
    x = digits.to_model(digits.test[chosen], train=False)
    context = digits.context(None)
    decoded = gaussian.likelihood.mean(gaussian.decoder(z.flatten(0, 1), context), context).view(pairs, steps, 1, 8, 8)
    rows = torch.cat([x[:pairs, None], decoded, x[pairs:, None]], dim=1).flatten(0, 1)
    assert picture.shape == (pairs * CELL + 1, (steps + 2) * CELL + 1, 1)
    np.testing.assert_array_equal(picture, tile(rows, cols=steps + 2))
    assert not np.array_equal(picture, interpolations(gaussian, digits, pairs=pairs, steps=steps, seed=8))


def test_reconstructions_are_the_models_for_the_seed(gaussian, digits):
    picture = reconstructions(gaussian, digits, n=6, seed=3)
    x = digits.to_model(digits.test[:6], train=False)
    context = digits.context(None)
    with seeded(3, "pictures", "reconstructions"):
        posterior = gaussian.encoder(x, context)
        z = posterior.mean + torch.randn_like(posterior.mean) * posterior.log_std.exp()
        again = gaussian.likelihood.mean(gaussian.decoder(z, context), context)
    assert picture.shape == (2 * CELL + 1, 6 * CELL + 1, 1)
    np.testing.assert_array_equal(picture, tile(torch.cat([x, again]), cols=6))
    np.testing.assert_array_equal(picture, reconstructions(gaussian, digits, n=6, seed=3))
    assert not np.array_equal(picture, reconstructions(gaussian, digits, n=6, seed=4))


def test_the_factor_heatmap_draws_the_mutual_information_of_the_posterior_means(shapes):
    torch.manual_seed(3)
    model = VAE(resolve("gaussian", shapes.spec, {"encoder": {"latent_dim": 6}})).eval()
    matrix = factor_mi_matrix(model, shapes, bins=10)
    codes = torch.cat([posterior_means(model, shapes, shapes.train), posterior_means(model, shapes, shapes.test)])
    factors = torch.cat([shapes.factors.train, shapes.factors.test])
    np.testing.assert_array_equal(matrix, mutual_information_matrix(codes.numpy(), factors.numpy(), 10))
    assert matrix.shape == (6, 5) and matrix.max() > 0
    picture = factor_mi(model, shapes, bins=10)
    width, height = heatmap_size(6, 5)
    assert picture.dtype == np.uint8 and picture.shape == (round(height * DPI), round(width * DPI), 3)
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 20  # drawn, not blank
    np.testing.assert_array_equal(picture, heatmap(matrix, shapes.factors.names))  # of this matrix
    assert not np.array_equal(picture, heatmap(matrix[::-1], shapes.factors.names))


def test_codes_and_hierarchies_get_none_for_the_vector_pictures(digits, shapes):
    for text, data in [("vq", digits), ("hierarchical", digits), ("vq", shapes)]:
        model = VAE(resolve(text, data.spec)).eval()
        drawn = pictures(model, data, seed=0)
        assert set(drawn) == set(PICTURES)
        assert drawn["traversals"] is None and drawn["interpolations"] is None and drawn["factor_mi"] is None, text
        assert drawn["reconstructions"].shape == (2 * CELL + 1, 16 * CELL + 1, 1)  # 16x16 shapes scale 2x: 33 too
    assert factor_mi(VAE(resolve("gaussian", digits.spec)), digits) is None  # digits has no factors


def test_decode_falls_back_to_sampled_pixels_without_a_mean(digits):
    model = VAE(resolve("gaussian+pixelcnn", digits.spec)).eval()  # an autoregressive likelihood: no mean
    z = torch.zeros(2, model.combo.latent.size)
    with seeded(0, "x"):
        images = decode(model, z, digits.context(None))
    assert images.shape == (2, 1, 8, 8)
    assert torch.equal(images * 16, (images * 16).round())  # sampled intensities, not a mean


def test_eval_writes_the_pictures_and_the_report_shows_them(tmp_path, shapes):
    vaereg_cli("eval", "--dataset", "shapes", *(f"--set=dataset.{k}={v}" for k, v in SHAPES.items()), "--combo",
               "gaussian", "--epochs", "1", "--no-fid", "--iw-samples", "2", "--threads", "1", "--quiet", "--out",
               "runs", cwd=tmp_path)
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    run = tmp_path / "runs" / next(p.name for p in (tmp_path / "runs").iterdir())
    files = {"traversals_png": "traversals.png", "interpolations_png": "interpolations.png",
             "factor_mi_png": "factor-mi.png", "reconstructions_png": "reconstructions.png"}
    for column, name in files.items():
        assert row[column] == str(run / name) and (run / name).is_file(), column
    path = run / "checkpoint.pt"
    model = checkpoint.rebuild(checkpoint.load(path), path).eval()
    again = pictures(model, shapes, seed=row["seed"])
    for name, column in [("traversals", "traversals_png"), ("interpolations", "interpolations_png"),
                         ("reconstructions", "reconstructions_png"), ("factor_mi", "factor_mi_png")]:
        written = np.asarray(Image.open(row[column]))
        np.testing.assert_array_equal(written, again[name][..., 0] if again[name].shape[-1] == 1 else again[name])

    vaereg_cli("report", "--out", "rep", cwd=tmp_path)
    md = (tmp_path / "rep" / "report.md").read_text()
    for name in files.values():
        assert md.count(f"-{name})") == 1, name
        (figure,) = (tmp_path / "rep" / "figures").glob(f"*-{name}")
        assert figure.read_bytes() == (run / name).read_bytes()
    assert "latent traversals" in md and "mutual information (nats) between latent dimensions and factors" in md
