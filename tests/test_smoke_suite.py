"""suites/smoke.toml end to end, as a user runs it: every strategy on every task, two seeds,
through the CLI (worker processes, results store), then the report and a comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import hobench


def test_every_cell_of_the_smoke_suite_succeeds(smoke_results):
    records = [json.loads(line) for line in (smoke_results / "runs.jsonl").read_text().splitlines()]
    assert len(records) == (3 * 9 - 1) * 2  # hyper-cleaning has no early-stopping row
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    for r in records:
        assert r["trajectory"], r["cell"]
        assert r["resources"]["cost"] <= r["budget"]["cost"]
        if r["task_kind"] == "ridge":
            assert r["final"]["regret"] is not None and r["final"]["regret"] >= -1e-9


def test_the_smoke_results_make_a_report_and_compare_clean_with_themselves(smoke_results):
    report = hobench("report", str(smoke_results))
    assert report.returncode == 0, report.stderr
    index = smoke_results / "report" / "index.html"
    assert index.is_file() and "data:image/png;base64" in index.read_text()
    same = hobench("compare", str(smoke_results), str(smoke_results))
    assert same.returncode == 0, same.stdout + same.stderr


def test_a_rerun_resumes_and_runs_nothing(smoke_results):
    again = hobench("run", "suites/smoke.toml", "--quiet", "--results-dir", str(smoke_results))
    assert again.returncode == 0
    assert "0 cell(s) run" in again.stderr or "nothing to run" in again.stderr.lower()


def finals(runs: Path) -> dict[str, dict]:
    records = [json.loads(line) for line in runs.read_text().splitlines()]
    return {r["cell"]: (r["status"], r["final"], r["resources"]["flops"]) for r in records}


def test_a_seeded_rerun_under_load_with_other_jobs_is_bit_identical(smoke_results, tmp_path):
    """Cost budgets and pinned threads: the same cells rerun with --jobs 1 while another
    process keeps a core busy give the same final metrics, to the last bit. (Seed 0's half of
    the suite, every task × strategy, keeps make test short.)"""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        again = hobench(
            "run",
            "suites/smoke.toml",
            "--jobs",
            "1",
            "--only",
            "/0",
            "--quiet",
            "--results-dir",
            str(tmp_path),
        )
    finally:
        burner.kill()
        burner.wait()
    assert again.returncode == 0, again.stderr[-2000:]
    rerun = finals(tmp_path / "runs.jsonl")
    first = {
        cell: value
        for cell, value in finals(smoke_results / "runs.jsonl").items()
        if cell.endswith("/0")
    }
    assert len(rerun) == len(first) == 3 * 9 - 1
    assert rerun == first


def test_the_smoke_results_compare_clean_with_the_committed_baseline(smoke_results):
    """CI's regression gate: same seeds, same accuracies; times normalised by calibration, and
    time and memory gated only where the torch build, device and threads match the baseline's."""
    gate = hobench("compare", "results/smoke-baseline", str(smoke_results), "--time-ratio", "2.0")
    assert gate.returncode == 0, gate.stdout + gate.stderr
