"""Every code example of README.md and docs/**/*.md runs as a test: see tests/examples/pages.py."""

import pytest

from tests.examples.directives import directives_before
from tests.examples.pages import EXAMPLES, Page

pytest_collect_file = EXAMPLES.pytest()


def pytest_addoption(parser):
    parser.addoption("--example-budget", choices=("small", "full"), default="small",
                     help="docs examples: small (default) appends budget-cutting options to vaereg eval, train, "
                          "sweep and search (tests/examples/shell.py); full runs them as written")


def pytest_collection_modifyitems(items):
    """An example under a ``<!-- slow: next -->`` directive is marked slow."""
    for item in items:
        example = getattr(item, "example", None)
        if example is not None and "slow" in directives_before(example.document.text, example.start):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def example_cache(tmp_path_factory):
    """One vaereg cache (FID classifier, reference statistics) for the examples, never the user's."""
    return tmp_path_factory.mktemp("example-cache")


@pytest.fixture(scope="module")
def example_page(request, tmp_path_factory, example_cache):
    """The page's folder and shell; its Python examples see the examples' cache and one torch thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAEREG_CACHE", str(example_cache))
        yield Page(tmp_path_factory.mktemp(request.node.path.stem), request.config.getoption("example_budget"),
                   example_cache)
    torch.set_num_threads(threads)
