"""examples/hobench-example, the plugin docs/plugins.md walks through: installed with pip as a
user would, its task and strategy found through entry points and run in a suite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hobench-example"

SUITE = """
description = "the example plugin's task with its strategies and a built-in one"
seeds = [0]
[budget]
cost = 30
[[tasks]]
id = "bowl"
kind = "quadratic-bowl"
dims = 2
[[strategies]]
kind = "coordinate-search"
[[strategies]]
kind = "random"
[[strategies]]
kind = "nsga2"
population_size = 6
"""


def test_the_example_plugin_installs_and_runs_in_a_suite(tmp_path: Path) -> None:
    source = shutil.copytree(EXAMPLE, tmp_path / "example")  # the build leaves files behind
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    install += ["--no-build-isolation", "--target", str(site), str(source)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    suite = tmp_path / "plugin.toml"
    suite.write_text(SUITE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    env.pop("HOBENCH_PLUGINS", None)  # found through entry points, not the test hook
    run = subprocess.run(
        [sys.executable, "-m", "hobench", "run", str(suite), "--jobs", "2", "--quiet"]
        + ["--results-dir", str(tmp_path / "results")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    lines = (tmp_path / "results" / "runs.jsonl").read_text().splitlines()
    records = {r["strategy"]: r for r in map(json.loads, lines)}
    assert set(records) == {"coordinate-search", "random", "nsga2"}
    for record in records.values():
        assert record["status"] == "ok", record["error"]
        assert record["resources"]["cost"] <= 30
        assert set(record["final"]) >= {"val_loss", "test_loss", "regret", "config"}
    search = records["coordinate-search"]
    assert len(search["trajectory"]) == 30  # one evaluation per plain-run equivalent
    assert search["final"]["test_loss"] < 0.01  # it found the bowl's bottom
    # The sampler plugin is a whole Optuna strategy: one evaluation per plain run, like random.
    sampler = records["nsga2"]
    assert len(sampler["trajectory"]) == len(records["random"]["trajectory"]) == 30


def test_the_docs_show_the_sampler_plugin_as_it_is() -> None:
    """docs/plugins.md quotes examples/.../sampler.py whole, so the tested file is the shown one."""
    source = (EXAMPLE / "src" / "hobench_example" / "sampler.py").read_text()
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert source.strip() in docs
    assert 'nsga2 = "hobench_example.sampler:NSGAII"' in docs
    assert len(source.strip().splitlines()) <= 22
