"""Fixtures several test modules share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hobench.hypergrad import compiled

ROOT = Path(__file__).resolve().parents[1]

# The engine's default is its compiled path, and suites compile too. The tests check the eager
# math and the harness, so a test that trains or runs a suite compiles nothing (compiling takes
# tens of seconds per function on 2 cores): HOBENCH_COMPILE=0 here and in every process the
# tests start. The tests of the compiled path remove it (the `compiling` fixture).
compiled.set_default(False)
os.environ[compiled.ENV] = "0"


@pytest.fixture
def compiling(monkeypatch) -> None:
    """The compiled path on, for a test of it (tests/conftest.py turns it off elsewhere)."""
    monkeypatch.delenv(compiled.ENV, raising=False)


@pytest.fixture(autouse=True, scope="session")
def catalog_cache(tmp_path_factory) -> None:
    """The registries' catalog (hobench.catalog) of this session's processes in a folder of its
    own, never in the user's cache."""
    from hobench.catalog import CACHE_ENV

    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("catalog"))
    yield
    if previous is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = previous


def hobench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "hobench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory) -> Path:
    """suites/smoke.toml run once through the CLI (the smoke tests and the Ray test read it)."""
    out = tmp_path_factory.mktemp("smoke")
    done = hobench("run", "suites/smoke.toml", "--jobs", "2", "--quiet", "--results-dir", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    return out
