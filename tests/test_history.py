"""`hobench track` and `hobench history`: one summary per run keyed by commit and date, and the
step changes beyond noise between consecutive commits."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from hobench.cli import main
from hobench.report.history import find_steps, read_history, track
from tests.report_fixture import make_records, write_runs

SMOKE_BASELINE = Path(__file__).resolve().parents[1] / "results" / "smoke-baseline"


def smoke_run(directory: Path, commit: str, day: int, regret_scale: float = 1.0) -> Path:
    """The committed smoke results as if run at `commit` on day `day`; ridge/tpe's regret
    scaled by `regret_scale` (a planted step)."""
    lines = (SMOKE_BASELINE / "runs.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    for record in records:
        record["manifest"].update(git_commit=commit, started_at=f"2026-12-{day:02d}T10:00:00Z")
        if record["cell"].startswith("ridge/tpe/"):
            record["final"]["regret"] *= regret_scale
    return write_runs(directory, records)


def test_history_flags_a_planted_step_across_three_commits(tmp_path: Path, capsys) -> None:
    history = tmp_path / "history.jsonl"
    commits = ["a" * 40, "b" * 40, "c" * 40]
    for day, (commit, scale) in enumerate(zip(commits, [1.0, 1.0, 2.0], strict=True), start=1):
        results = smoke_run(tmp_path / commit[0], commit, day, scale)
        assert main(["track", str(results), "--history", str(history)]) == 0
    entries = [json.loads(line) for line in history.read_text().splitlines()]
    assert [e["commit"] for e in entries] == commits
    assert entries[0]["metrics"]["smoke:ridge/tpe/regret"]["exact"] is True  # cost budgets
    capsys.readouterr()
    assert main(["history", str(history)]) == 0
    out = capsys.readouterr().out
    assert "3 tracked commit(s)" in out
    assert "1 step change(s) beyond noise" in out
    step = "- smoke:ridge/tpe/regret: step at cccccccccc (2026-12-03T10:00:00Z) (+100.0%), worse"
    assert step in out
    plot = tmp_path / "history.png"
    assert main(["history", str(history), "--metric", "ridge/tpe", "--plot", str(plot)]) == 0
    row = r"smoke:ridge/tpe/regret +aaaaaaa=0\.177  bbbbbbb=0\.177  ccccccc=0\.354\*"
    assert re.search(row, capsys.readouterr().out)  # names padded to the longest shown
    assert plot.stat().st_size > 10_000
    assert main(["history", str(history), "--metric", "ridge/grid"]) == 0
    assert "No step changes beyond noise." in capsys.readouterr().out


def test_noisy_metrics_need_a_change_beyond_the_seed_spread(tmp_path: Path) -> None:
    """Under a seconds budget nothing is exact: a shift within the seeds' spread is noise."""
    history = tmp_path / "history.jsonl"
    shifts = [0.0, -0.005, -0.05]  # seeds spread ±0.01 around each mean
    for i, shift in enumerate(shifts):
        records = make_records(acc_shift={("auxtarget", "rtho"): shift})
        track(
            write_runs(tmp_path / str(i), records),
            history,
            commit=f"c{i}",
            date=f"2026-12-0{i + 1}",
        )
    steps = find_steps(read_history(history))
    flagged = steps[steps["step"]]
    assert set(flagged["commit"]) == {"c2"}
    assert "fixture:auxtarget/rtho/test_acc" in set(flagged["metric"])
    assert not steps[steps["commit"] == "c1"]["step"].any()


def benchmark_file(path: Path, commit: str, median: float, stddev: float) -> Path:
    """A pytest-benchmark JSON file of the shape `--benchmark-save` writes."""
    document = {
        "machine_info": {"node": "ci", "python_version": "3.11.7", "cpu": {"brand_raw": "CPU"}},
        "commit_info": {"id": commit, "time": f"2026-12-0{len(commit)}T00:00:00+00:00"},
        "benchmarks": [
            {
                "group": "reverse",
                "name": "test_reverse[T500]",
                "stats": {"median": median, "stddev": stddev, "rounds": 5},
            }
        ],
        "datetime": "2026-12-01T00:00:00",
        "version": "5.3.1",
    }
    path.write_text(json.dumps(document))
    return path


def test_engine_benchmarks_join_the_same_history(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    for commit, median in [("1", 1.0), ("22", 1.01), ("333", 2.0)]:
        track(benchmark_file(tmp_path / f"{commit}.json", commit, median, 0.02), history)
    track(smoke_run(tmp_path / "suite", "333", 3), history)
    frame = find_steps(read_history(history))
    engine = frame[frame["metric"] == "engine:reverse/test_reverse[T500]/median_s"]
    assert engine["commit"].tolist() == ["1", "22", "333"]
    assert engine["step"].tolist() == [False, False, True]
    assert engine["worse"].tolist() == [False, False, True]  # slower is worse
    assert {"pytest-benchmark", "suite"} == set(frame["source"])


def test_bad_history_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "h.jsonl").write_text('{"schema": 1}\n')
    assert main(["history", str(tmp_path / "h.jsonl")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "h.jsonl:1: not a history entry" in err[0]
    assert main(["history", str(tmp_path / "missing.jsonl")]) == 2
    assert "no history file" in capsys.readouterr().err


@pytest.mark.parametrize("commit", [None, "feedface"])
def test_track_takes_the_commit_from_the_manifest_or_the_flag(tmp_path: Path, commit) -> None:
    entry = track(smoke_run(tmp_path / "r", "f" * 40, 1), tmp_path / "h.jsonl", commit=commit)
    assert entry["commit"] == (commit or "f" * 40)
    assert entry["date"] == "2026-12-01T10:00:00Z" and entry["name"] == "smoke"
    assert copy.deepcopy(entry)["environment"]["torch"] == "2.13.0+cpu"
