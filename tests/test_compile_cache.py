"""Suites on the compiled path: the machine's compile cache, filled once before the cells and
loaded by every later process; an unwritable cache folder and a missing C++ compiler each cost
one line, never a failed cell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hobench.harness import compile_cache
from hobench.hypergrad.compiled import ENV as COMPILE_ENV
from tests.conftest import ROOT

SUITE = """
name = "compiled"
seeds = [0, 1]
device = "cpu"
threads = 1
[budget]
cost = 4
[[tasks]]
kind = "ridge"
groups = 2
steps = 20
[[strategies]]
kind = "reverse-hg"
"""


def run(suite: Path, results: Path, cache: Path, **env: str) -> subprocess.CompletedProcess:
    """The CLI with the compiled path on (tests/conftest.py turns it off) and its own cache."""
    environ = {k: v for k, v in os.environ.items() if k != COMPILE_ENV}
    environ.update(HOBENCH_CACHE_DIR=str(cache), **env)
    environ.pop(compile_cache.INDUCTOR_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "hobench", "run", str(suite), "--quiet"]
        + ["--results-dir", str(results)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
    )


def records(results: Path) -> list[dict]:
    lines = (results / "runs.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda r: r["cell"])


def test_a_second_process_loads_the_compiled_code_instead_of_compiling(tmp_path) -> None:
    suite = tmp_path / "compiled.toml"
    suite.write_text(SUITE)
    cache = tmp_path / "cache"
    first = run(suite, tmp_path / "first", cache)
    assert first.returncode == 0, first.stderr[-2000:]
    # The runner compiled the pair once, before the cells, and marked it warm on this machine.
    assert "compiled 1 task x strategy pair(s)" in first.stderr
    assert any((cache / "compile").rglob("*.py"))  # inductor's generated code, in our cache
    second = run(suite, tmp_path / "second", cache)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "pair(s)" not in second.stderr  # already warm: nothing compiled before the cells
    for record in records(tmp_path / "first") + records(tmp_path / "second"):
        resources = record["resources"]
        assert record["status"] == "ok" and record["compile"] is True
        assert resources["compile_fallback"] is None
        # Every cell, of either run, loaded its graphs from the cache and generated none.
        assert resources["compile_cache_hits"] >= 2 and resources["compile_cache_misses"] == 0
    # Compiled against compiled, a seeded rerun in another process is bit-identical.
    assert [r["final"] for r in records(tmp_path / "first")] == [
        r["final"] for r in records(tmp_path / "second")
    ]


def test_without_a_cpp_compiler_the_run_is_eager_and_says_so_once(tmp_path) -> None:
    suite = tmp_path / "compiled.toml"
    suite.write_text(SUITE.replace("seeds = [0, 1]", "seeds = [0]"))
    done = run(suite, tmp_path / "out", tmp_path / "cache", CXX="/nonexistent/g++")
    assert done.returncode == 0, done.stderr[-2000:]
    said = [line for line in done.stderr.splitlines() if "cannot compile here" in line]
    assert len(said) == 1 and "InvalidCxxCompiler" in said[0] and "g++" in said[0]
    (record,) = records(tmp_path / "out")
    assert record["status"] == "ok" and record["compile"] is False
    assert record["resources"]["compile_s"] == 0.0


def test_an_unwritable_cache_folder_falls_back_to_a_temporary_one(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("HOBENCH_CACHE_DIR", str(blocker))
    monkeypatch.delenv(compile_cache.INDUCTOR_ENV, raising=False)
    folder, warning = compile_cache.configure()
    assert warning is not None and "\n" not in warning
    assert str(blocker) in warning and "for this run only" in warning
    assert Path(folder).is_dir() and os.environ[compile_cache.INDUCTOR_ENV] == folder


def test_the_users_own_inductor_cache_folder_is_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(compile_cache.INDUCTOR_ENV, str(tmp_path / "mine"))
    assert compile_cache.configure() == (str(tmp_path / "mine"), None)
