"""A third-party data set with ground-truth factors, generated (no download): binary
``size x size`` images of one horizontal bar, drawn from three independent uniform factors, the
bar's first column ``x``, its row ``y`` and its ``length`` (1..4 pixels, stored as length - 1).
The same options give the same images."""

import dataclasses
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import Tensor

from vaereg import Dataset, DataSource, DataSpec, Range, hookimpl
from vaereg.data import Factors

VAEREG_PLUGIN_API = 3

MAX_LENGTH = 4


@dataclass
class ToyFactorsConfig:
    size: Annotated[int, Range(MAX_LENGTH, 64)] = 8  # the images' side in pixels
    train_images: Annotated[int, Range(1, 1_000_000)] = 900
    test_images: Annotated[int, Range(1, 1_000_000)] = 100
    seed: Annotated[int, Range(0, 2**31 - 1)] = 0


def render(factors: Tensor, size: int) -> Tensor:
    """``[N, 1, size, size]`` uint8 images (0 or 1) of the bars that ``factors`` (``[N, 3]``: x, y,
    length - 1) describe."""
    x, y, extent = factors.unbind(1)
    columns = torch.arange(size)
    bar = (columns >= x[:, None]) & (columns <= (x + extent)[:, None])  # [N, size]: the bar's row
    images = torch.zeros(len(factors), 1, size, size, dtype=torch.uint8)
    images[torch.arange(len(factors)), 0, y] = bar.to(torch.uint8)
    return images


class ToyFactors(DataSource):
    """Binary images of one horizontal bar, with its position and length as ground-truth factors."""

    Config = ToyFactorsConfig

    def load(self, root, *, download=False, argument=None) -> Dataset:
        config = self.config
        sizes = (config.size - MAX_LENGTH + 1, config.size, MAX_LENGTH)
        generator = torch.Generator().manual_seed(config.seed)
        count = config.train_images + config.test_images
        factors = torch.stack([torch.randint(s, (count,), generator=generator) for s in sizes], dim=1)
        images = render(factors, config.size)
        cut = config.train_images
        defaults = dataclasses.asdict(ToyFactorsConfig())
        changed = "".join(f"-{k}{v}" for k, v in dataclasses.asdict(config).items() if v != defaults[k])
        spec = DataSpec(f"toyfactors{changed}", 1, config.size, config.size, 2)  # rows are keyed by the name
        return Dataset(spec, images[:cut], images[cut:],
                       factors=Factors(("x", "y", "length"), sizes, factors[:cut], factors[cut:]))


@hookimpl
def register_datasets(register):
    register("toyfactors", ToyFactors)
