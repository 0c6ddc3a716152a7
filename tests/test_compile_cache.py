"""Suites on the compiled path: the machine's compile cache, filled once before the cells and
loaded by every later process; an unwritable cache folder and a missing C++ compiler each cost
one line, never a failed cell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hobench.harness import compile_cache
from hobench.hypergrad.compiled import ENV as COMPILE_ENV
from hobench.hypergrad.compiled import PACKAGES_ENV
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
    # Whole compiled functions: the step, and the pullback packaged after it (its Dynamics
    # holds the step's compiled code, which must not be pickled into the pullback's package).
    assert any((cache / "compile").rglob("packages/step-*.bin"))
    assert any((cache / "compile").rglob("packages/pullback-*.bin"))
    assert not any((cache / "compile").rglob("*.unpackageable"))
    second = run(suite, tmp_path / "second", cache)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "pair(s)" not in second.stderr  # already warm: nothing compiled before the cells
    warmed = [r for r in records(tmp_path / "first") if r["seed"] == 0]
    for record in warmed + records(tmp_path / "second"):
        resources = record["resources"]
        assert record["status"] == "ok" and record["compile"] is True
        assert resources["compile_fallback"] is None
        # Each of its compiled functions (step, pullback) was loaded whole, untraced; none was
        # generated in the cell.
        assert resources["compile_packages_loaded"] >= 2, resources
        assert resources["compile_cache_misses"] == 0, resources
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
    monkeypatch.delenv(PACKAGES_ENV, raising=False)  # configure() sets both: restored after
    folder, warning = compile_cache.configure()
    assert warning is not None and "\n" not in warning
    assert str(blocker) in warning and "for this run only" in warning
    assert Path(folder).is_dir() and os.environ[compile_cache.INDUCTOR_ENV] == folder


def test_the_users_own_inductor_cache_folder_is_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(compile_cache.INDUCTOR_ENV, str(tmp_path / "mine"))
    monkeypatch.delenv(PACKAGES_ENV, raising=False)  # configure() sets it: restored after
    assert compile_cache.configure() == (str(tmp_path / "mine"), None)


def test_a_package_serves_another_seed_and_a_corrupt_one_is_rebuilt(
    tmp_path, monkeypatch, compiling
) -> None:
    """A step compiled for one seed's ridge problem is loaded whole for another seed's (same
    code, same shapes, other data) and gives that seed's eager answer; a package that cannot be
    read is deleted with one warning, compiled again and written again."""
    import warnings

    import torch

    from hobench.hypergrad import compiled
    from tests import hypergrad_problems as problems

    monkeypatch.setenv(compiled.PACKAGES_ENV, str(tmp_path))

    def step(seed: int):
        problem, _ = problems.ridge(seed)
        with torch.no_grad():
            out = compiled.compiled(problem.dynamics, "step")(problem.s0, problem.hp, None)
            eager = problem.dynamics.step(problem.s0, problem.hp, None)
        torch.testing.assert_close(out, eager, rtol=1e-10, atol=1e-12)

    step(0)
    if compiled.compile_failure():
        pytest.skip(f"torch.compile does not work here: {compiled.compile_failure()}")
    (package,) = tmp_path.glob("step-*.bin")
    loaded = compiled.packages_loaded()
    step(1)
    assert compiled.packages_loaded() == loaded + 1  # seed 1 ran seed 0's package, untraced
    package.write_bytes(b"not a package")
    with pytest.warns(RuntimeWarning, match=r"unreadable .*; compiling it again"):
        step(2)
    (rebuilt,) = tmp_path.glob("step-*.bin")
    assert rebuilt.read_bytes() != b"not a package"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step(3)
    assert compiled.packages_loaded() == loaded + 2


def test_compiling_under_a_cells_seed_neither_uses_nor_moves_its_random_stream(
    tmp_path, monkeypatch, compiling
) -> None:
    """A tangent step (vmap of jvp: a graph AOTAutograd cannot key, so torch 2.13 keys it with
    `random.random()`) packaged under Python seed 0, as a cell of seed 0 compiles it: its cache
    entry is not keyed by the seed's first draw (every such function of every seed-0 cell had
    that key, and auxtarget's tangent step was served ridge's: "too many values to unpack"),
    it gives the eager answer, and the cell's seeded stream is as it was. (Torch draws a few
    numbers first on its first compile in a process, so the key is not simply the first draw.)"""
    import random

    import torch
    from torch.utils._pytree import tree_map

    from hobench.hypergrad import compiled
    from hobench.hypergrad.forward import hp_basis
    from tests import hypergrad_problems as problems

    monkeypatch.setenv(compiled.PACKAGES_ENV, str(tmp_path / "packages"))
    monkeypatch.setenv(compile_cache.INDUCTOR_ENV, str(tmp_path / "inductor"))
    problem, _ = problems.ridge(d=5)
    s0, hp = problem.s0, problem.hp
    z = tree_map(lambda x: torch.zeros(len(hp), *x.shape, dtype=x.dtype), s0)
    args = (s0, z, hp, hp_basis(hp), None)
    random.seed(0)
    with torch.no_grad():
        out = compiled.compiled(problem.dynamics, "tangent_step")(*args)
    assert random.random() == random.Random(0).random()  # the cell's stream, untouched
    if compiled.compile_failure():
        pytest.skip(f"torch.compile does not work here: {compiled.compile_failure()}")
    torch.testing.assert_close(out, compiled.tangent_step_of(problem.dynamics)(*args))
    assert len(list((tmp_path / "packages").glob("tangent_step-*.bin"))) == 1
    keys = {p.name for p in (tmp_path / "inductor").rglob("aotautograd/*")}
    seeded = random.Random(0)
    assert keys and not keys & {str(seeded.random()) for _ in range(10_000)}, keys
