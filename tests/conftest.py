import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from vaereg import registry
from vaereg_harness.data import load_data

PLUGINS = Path(__file__).parent / "plugins"
#: The selections a test may be in besides the default: at most one each (tests/test_selections.py).
SELECTIONS = ("slow", "distributed", "slurm", "gpu")
#: The mark of a test that runs alone, never beside another pytest-xdist worker's test.
ALONE = "serial"


def shared_folder(config: pytest.Config) -> Path | None:
    """The folder every pytest-xdist worker of this run shares (the run's basetemp, whose
    ``gwN`` folders are the workers'); None outside xdist."""
    if not hasattr(config, "workerinput") or not config.option.basetemp:
        return None
    return Path(config.option.basetemp).parent


@contextmanager
def turn(config: pytest.Config, alone: bool) -> Iterator[None]:
    """A test's turn among the xdist workers: a ``serial`` one holds the run's lock exclusively
    (it waits for the other workers' tests in flight, and they wait for it), every other test
    holds it shared. The turnstile, held by a serial test while it waits, keeps the other
    workers' next tests from overtaking it (flock has no writer preference)."""
    folder = shared_folder(config)
    if folder is None:
        yield
        return
    with open(folder / "turnstile.lock", "a") as turnstile, open(folder / "tests.lock", "a") as tests:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(tests, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(tests, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Setup (module fixtures included), call and teardown of a ``serial`` test run alone."""
    with turn(item.config, alone=item.get_closest_marker(ALONE) is not None):
        return (yield)


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory, request):
    """One cache (FID classifier, reference statistics) for the run, never the user's; the xdist
    workers share it (its entries are written under a lock and by rename, so one trains each)."""
    old = os.environ.get("VAEREG_CACHE")
    shared = shared_folder(request.config)
    folder = shared / "vaereg-cache" if shared else tmp_path_factory.mktemp("vaereg-cache")
    folder.mkdir(exist_ok=True)
    os.environ["VAEREG_CACHE"] = str(folder)
    yield Path(os.environ["VAEREG_CACHE"])
    if old is None:
        del os.environ["VAEREG_CACHE"]
    else:
        os.environ["VAEREG_CACHE"] = old


@pytest.fixture(scope="session")
def digits():
    return load_data("digits")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def vaereg_cli(*args: str, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "vaereg_harness.cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"vaereg {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


@contextmanager
def installed(target: Path, *packages: str) -> Iterator[Path]:
    """The suite's third-party plugin ``packages`` (folders of ``tests/plugins``) pip-installed
    into ``target``, as real distributions with their own entry points; this process's registry
    reads them until the block ends."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), *(str(PLUGINS / name) for name in packages)],
                   check=True, capture_output=True)
    sys.path.insert(0, str(target))
    registry._registry = None
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        registry._registry = None


def env_with(site: Path, **extra: str) -> dict:
    """The environment of a subprocess that sees the plugins installed in ``site``."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *sys.path]), **extra)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: beside other busy processes, two make small models many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def built_in_plugins() -> list[str]:
    """vaereg's own plugins (entry-point names), read from the registry."""
    return sorted(p.name for p in registry.get_registry().plugins if p.distribution == registry.BUILT_IN)


def built_in(plugin: str) -> bool:
    return plugin in built_in_plugins()
