"""The built-in ``shapes`` data set (dSprites-like, generated): every factor combination once,
deterministic bytes, binary images whose pixel counts, centroids and symmetries follow the
factors as hand-computed, labels equal to the shape, and an end-to-end eval on a tiny version."""

import math

import numpy as np
import pytest
import torch

from tests.conftest import vaereg_cli
from vaereg import UsageError
from vaereg.data import check_dataset
from vaereg_harness.api import load_data
from vaereg_harness.data.shapes import ShapesConfig, all_factors, centres, factor_grid, radii, render
from vaereg_harness.store.results import read_results

TINY = {"canvas": 16, "scales": 2, "orientations": 4, "positions": 3}  # 3 x 2 x 4 x 3 x 3 = 216 images


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def default():
    return load_data("shapes")


def drawn(config: ShapesConfig, *factors: int) -> np.ndarray:
    """The ``[canvas, canvas]`` image of one factor combination."""
    return render(np.array([factors]), config)[0, 0]


def test_the_defaults_hold_every_combination_once(default):
    assert (default.spec.name, default.spec.channels, default.spec.height, default.spec.width,
            default.spec.intensities, default.spec.classes) == ("shapes", 1, 32, 32, 2, 0)
    factors = default.factors
    assert factors.names == ("shape", "scale", "orientation", "x", "y") and factors.sizes == (3, 4, 8, 8, 8)
    assert default.train.shape == (4915, 1, 32, 32) and default.test.shape == (1229, 1, 32, 32)  # 6144, 80/20
    both = torch.cat([factors.train, factors.test])
    assert both.dtype == torch.int64 and torch.unique(both, dim=0).shape == (6144, 5)
    assert (both.min(0).values == 0).all() and both.max(0).values.tolist() == [2, 3, 7, 7, 7]
    assert default.options == {}
    check_dataset(default, "shapes")


def test_images_are_binary_non_empty_and_drawn_from_their_factors(default):
    config = ShapesConfig()
    for images, factors in ((default.train, default.factors.train), (default.test, default.factors.test)):
        assert images.dtype == torch.uint8 and set(images.unique().tolist()) == {0, 1}
        assert images.flatten(1).sum(1).min() > 0
        assert np.array_equal(images.numpy(), render(factors.numpy(), config))


def test_labels_are_the_shape_factor(default):
    assert torch.equal(default.train_labels, default.factors.train[:, 0])
    assert torch.equal(default.test_labels, default.factors.test[:, 0])
    assert default.train_labels.dtype == torch.int64 and set(default.train_labels.tolist()) == {0, 1, 2}


def test_the_same_options_give_the_same_bytes_and_others_differ(default):
    again = load_data("shapes")
    assert torch.equal(again.train, default.train) and torch.equal(again.factors.test, default.factors.test)
    reseeded = load_data("shapes", options={"seed": 1})  # the same images, split differently
    assert reseeded.spec.name == "shapes-seed1" and reseeded.options == {"seed": 1}
    assert not torch.equal(reseeded.factors.test, default.factors.test)
    assert reseeded.test.shape == default.test.shape
    same = torch.cat([reseeded.factors.train, reseeded.factors.test]).unique(dim=0)
    assert torch.equal(same, torch.cat([default.factors.train, default.factors.test]).unique(dim=0))
    tiny = load_data("shapes", options=TINY)
    assert tiny.spec.name == "shapes-canvas16-scales2-orientations4-positions3" and tiny.options == TINY
    assert tiny.train.shape == (173, 1, 16, 16) and tiny.test.shape == (43, 1, 16, 16)  # 216: 43 = round(216 / 5)
    assert torch.unique(torch.cat([tiny.factors.train, tiny.factors.test]), dim=0).shape == (216, 5)
    assert tiny.factors.sizes == (3, 2, 4, 3, 3)
    check_dataset(tiny, "shapes")


def test_the_square_covers_the_hand_counted_pixels_growing_with_scale():
    config = ShapesConfig()
    assert radii(config).tolist() == pytest.approx([3.2, 32 / 15 * 2, 32 / 15 * 2.5, 6.4])
    assert all(float(c).is_integer() for c in centres(config))  # every centre on a pixel corner
    counts = []
    for scale, radius in enumerate(radii(config)):
        half = radius / math.sqrt(2)  # the square's half side at bounding radius `radius`
        per_axis = 2 * math.floor(half + 0.5)  # pixel centres k + 0.5 within `half` of a corner
        image = drawn(config, 0, scale, 0, 3, 3)
        assert image.sum() == per_axis**2
        counts.append([int(drawn(config, shape, scale, 0, 3, 3).sum()) for shape in range(3)])
    for shape in range(3):
        column = [c[shape] for c in counts]
        assert column == sorted(set(column)), (shape, column)  # strictly growing with scale
    odd = ShapesConfig(canvas=17, positions=1)  # one centre at 8.5, a pixel centre: 2 floor(half) + 1 per axis
    for scale, radius in enumerate(radii(odd)):
        assert drawn(odd, 0, scale, 0, 0, 0).sum() == (2 * math.floor(radius / math.sqrt(2)) + 1) ** 2


def centroid(image: np.ndarray) -> tuple[float, float]:
    """Centre of mass (x, y) in pixels from the canvas's left and top edges."""
    rows, columns = np.nonzero(image)
    return float(columns.mean() + 0.5), float(rows.mean() + 0.5)


def test_position_moves_the_centre_of_mass_by_the_grid_step():
    config = ShapesConfig()
    grid = centres(config)
    assert grid.tolist() == [9, 11, 13, 15, 17, 19, 21, 23]  # step floor(3 * 32 / (5 * 7)) = 2, centred
    for x in range(8):  # the square is symmetric: its centroid is its centre
        assert centroid(drawn(config, 0, 3, 1, x, 5)) == (grid[x], grid[5])
    heart = centroid(drawn(config, 2, 2, 3, 0, 0))
    for x, y in ((1, 0), (0, 4), (7, 7)):  # the (asymmetric) heart moves by whole steps
        assert centroid(drawn(config, 2, 2, 3, x, y)) == pytest.approx((heart[0] + 2 * x, heart[1] + 2 * y), abs=1e-9)


def test_a_quarter_turn_keeps_the_square_but_not_the_heart():
    config, middle = ShapesConfig(), ShapesConfig(positions=1)  # orientation 2 of 8 is a quarter-turn, 4 a half
    for scale in range(4):
        square = drawn(config, 0, scale, 0, 4, 2)
        assert np.array_equal(drawn(config, 0, scale, 2, 4, 2), square)
        assert np.array_equal(drawn(config, 1, scale, 4, 4, 2), drawn(config, 1, scale, 0, 4, 2))  # ellipse: half
        assert not np.array_equal(drawn(config, 1, scale, 2, 4, 2), drawn(config, 1, scale, 0, 4, 2))
        heart = drawn(config, 2, scale, 0, 4, 2)
        assert not np.array_equal(drawn(config, 2, scale, 2, 4, 2), heart)
        # a quarter-turn counter-clockwise as seen is np.rot90 (about the canvas's centre, the one position here)
        assert np.array_equal(drawn(middle, 2, scale, 2, 0, 0), np.rot90(drawn(middle, 2, scale, 0, 0, 0)))
    assert not np.array_equal(drawn(config, 0, 3, 1, 3, 3), drawn(config, 0, 3, 0, 3, 3))  # an eighth-turn shows
    # canvas 75: the ellipse (semi-axes 15 and 7.5 px about a pixel centre) passes exactly through pixel centres
    # off its axes, (9, 6) among them (81 / 225 + 36 / 56.25 = 1): turning it must not move a pixel on or off
    tied = ShapesConfig(canvas=75, shapes=2, scales=1, orientations=4, positions=1)
    ellipse = drawn(tied, 1, 0, 0, 0, 0)
    assert ellipse[37 - 6, 37 + 9] == 1 and ellipse[37 - 6, 37 + 10] == 0  # the centre is pixel (37, 37)
    assert np.array_equal(drawn(tied, 1, 0, 2, 0, 0), ellipse)
    assert np.array_equal(drawn(tied, 1, 0, 1, 0, 0), np.rot90(ellipse))


def test_the_shapes_stay_inside_the_canvas_at_every_scale_and_position():
    config = ShapesConfig(canvas=16, orientations=16, positions=10)  # 10 is the most positions 16 px hold
    grid, top = centres(config), radii(config)[-1]
    assert grid[0] - top >= 0 and grid[-1] + top <= 16 and grid[0] - top < 0.5  # the extremes reach the border
    factors = all_factors(config)
    images = render(factors, config)
    counts = images.reshape(config.shapes, config.scales, config.orientations, 100, -1).sum(-1)
    assert (counts == counts[..., :1]).all()  # nothing clipped: the same pixel count at all 100 positions
    rows, columns = np.mgrid[:16, :16] + 0.5
    for n in range(0, len(factors), 97):  # every lit pixel lies within the bounding radius of the centre
        shape, scale, orientation, x, y = factors[n]
        lit = images[n, 0] == 1
        assert (np.hypot(columns - grid[x], rows - grid[y])[lit] <= radii(config)[scale]).all()
    assert images.reshape(len(images), -1).sum(1).min() > 0  # canvas >= 16: even the smallest shape shows


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"positions": 11, "canvas": 16}, "dataset 'shapes': positions=11 do not fit on a 16-pixel canvas (the "
                                          "largest shape has radius 3.2 px); give positions <= 10 or canvas >= 17"),
        ({"shapes": 4}, "dataset 'shapes': shapes=4 is out of range; expected an integer >= 1 and <= 3"),
        ({"canvas": 8}, "dataset 'shapes': canvas=8 is out of range; expected an integer >= 16 and <= 256"),
        ({"shapes": 1, "scales": 1, "orientations": 1, "positions": 1},
         "dataset 'shapes': shapes, scales, orientations and positions all 1 give one image; raise one of them so "
         "both splits have an image"),
    ],
)
def test_bad_options_are_one_line(options, message):
    with pytest.raises(UsageError) as caught:
        load_data("shapes", options=options)
    assert str(caught.value) == message
    if "positions" in options:  # the largest that fit does fit
        assert load_data("shapes", options={"positions": 10, "canvas": 16}).factors.sizes[3] == 10
        assert load_data("shapes", options={"positions": 11, "canvas": 17}).factors.sizes[3] == 11


def test_the_factor_grid_varies_one_factor_per_row():
    config = ShapesConfig(**TINY)
    grid = factor_grid(config, zoom=2)
    side = config.canvas + 1
    assert grid.shape == (2 * (5 * side + 1), 2 * (4 * side + 1)) and grid.dtype == np.uint8
    small = grid[::2, ::2]
    assert np.array_equal(grid, small.repeat(2, 0).repeat(2, 1))
    base, sizes = [2, 1, 0, 1, 1], (3, 2, 4, 3, 3)
    for row, size in enumerate(sizes):
        for value in range(4):
            top, left = row * side + 1, value * side + 1
            cell = small[top:top + config.canvas, left:left + config.canvas]
            if value >= size:
                assert (cell == 128).all()
                continue
            factors = list(base)
            factors[row] = value
            assert np.array_equal(cell, drawn(config, *factors) * 255)

def test_eval_trains_and_scores_a_tiny_shapes_set(tmp_path):
    settings = [a for k, v in TINY.items() for a in ("--set", f"dataset.{k}={v}")]
    vaereg_cli("eval", "--dataset", "shapes", *settings, "--combo", "gaussian-mlp", "--epochs", "1", "--no-fid",
               "--iw-samples", "2", "--threads", "1", "--quiet", cwd=tmp_path)
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert row["dataset"] == "shapes-canvas16-scales2-orientations4-positions3" and math.isfinite(row["nll_nats"])
    assert row["nll_bpd"] == pytest.approx(row["nll_nats"] / (256 * math.log(2)))
