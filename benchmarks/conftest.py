"""Shared pieces of the benchmark suites: ``--short`` (the CI mode) and the data."""

from __future__ import annotations

import pytest
import torch

from vaereg_harness.data import Dataset, load_data


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Benchmarks run in one process, whatever pyproject's ``-n auto`` says: timings beside another
    worker measure the load, and pytest-benchmark switches itself off under xdist."""
    if hasattr(config.option, "numprocesses"):
        config.option.numprocesses, config.option.dist = 0, "no"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--short", action="store_true", help="Fewer rounds and epochs (CI); ratios stay meaningful.")


@pytest.fixture(scope="session")
def short(request: pytest.FixtureRequest) -> bool:
    return request.config.getoption("--short")


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_data("digits")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def report(benchmark, images: int, **ratios: float) -> None:
    """Record images/s of the fastest round, and any ratios, in ``extra_info``; print ratios."""
    benchmark.extra_info["images_per_s"] = images / benchmark.stats.stats.min
    for name, value in ratios.items():
        benchmark.extra_info[name] = value
        print(f"\n{benchmark.name}: {name} = {value:.2f}")
