import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vaereg_harness.data import load_data


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """One cache (FID classifier, reference statistics) for the session, never the user's."""
    old = os.environ.get("VAEREG_CACHE")
    os.environ["VAEREG_CACHE"] = str(tmp_path_factory.mktemp("vaereg-cache"))
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
