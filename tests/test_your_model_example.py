"""examples/your-model, the "bring your model" page of the docs: run as written, from its own
folder with PYTHONPATH=., it tunes a user's nn.Module on the user's data with three strategies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "your-model"


def test_your_model_example_runs_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": "."}
    env.pop("HOBENCH_PLUGINS", None)
    run = subprocess.run(
        [sys.executable, "-m", "hobench", "run", "your_model.toml", "--quiet"]
        + ["--results-dir", str(tmp_path / "results")],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in (tmp_path / "results" / "runs.jsonl").open()]
    assert {r["strategy"] for r in records} == {"random", "tpe", "reverse-hg"}
    for record in records:
        assert record["status"] == "ok", record["error"]
        assert set(record["final"]["config"]) == {"lr", "momentum", "wd:all"}
        assert record["final"]["test_acc"] > 0.5  # trained, not guessed (10 classes)
