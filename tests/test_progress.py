"""`hobench run`'s progress: one line per finished cell with an ETA in --quiet and in logs; on a
terminal a live bar with each running cell's budget spent and incumbent."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

from hobench.harness.budget import Budget
from hobench.harness.recorder import STATUS_ENV, Recorder
from hobench.harness.runner import Progress, run_suite
from hobench.harness.suite import load_suite
from tests import harness_toys


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(cell: str, ok: bool = True) -> dict:
    return {
        "cell": cell,
        "status": "ok" if ok else "failed",
        "error": None if ok else "RuntimeError: planted",
        "final": {"val_loss": 0.25, "regret": 0.01} if ok else {},
        "resources": {"wall_s": 1.5},
    }


def test_quiet_and_logs_get_one_line_per_cell_with_an_eta() -> None:
    for quiet in (True, False):
        log = io.StringIO()  # not a terminal: a CI log
        progress = Progress(3, quiet=quiet, stream=log)
        progress.begin()
        progress.running([("t/s/0", {"spent": 0.5, "incumbent_val_loss": 0.3})])  # no bar: silent
        for i, ok in enumerate((True, False, True)):
            progress.finished(record(f"t/s/{i}", ok))
        progress.close()
        lines = log.getvalue().splitlines()
        assert len(lines) == 3, lines
        assert lines[0].startswith("[1/3] t/s/0 ok 1.5s") and ", eta " in lines[0]
        assert lines[1].startswith("[2/3] t/s/1 FAILED 1.5s RuntimeError: planted, eta ")
        assert lines[2].startswith("[3/3] t/s/2 ok 1.5s") and "eta" not in lines[2]
        assert ("regret=0.01" in lines[0]) is not quiet


def test_terminal_bar_shows_running_cells_and_eta() -> None:
    term = Terminal()
    progress = Progress(2, quiet=False, stream=term)
    progress.begin()
    progress.running([("t/s/0", {"spent": 0.42, "incumbent_val_loss": 0.123}), ("t/s/1", None)])
    progress.finished(record("t/s/0"))
    progress.close()
    out = term.getvalue()
    assert "0/2 cells" in out and "1/2 cells" in out
    assert "t/s/0 42% best 0.123; t/s/1" in out
    assert "[1/2] t/s/0 ok 1.5s val_loss=0.25 regret=0.01, eta " in out


def test_recorder_writes_its_status_for_the_runner(tmp_path: Path, monkeypatch) -> None:
    status = tmp_path / "cell.status"
    monkeypatch.setenv(STATUS_ENV, str(status))
    budget = Budget(steps=100).start()
    recorder = Recorder(budget)
    budget.steps_used = 25
    recorder.point({"x": 0.1}, val_loss=0.5)
    assert json.loads(status.read_text()) == {
        "spent": 0.25,
        "points": 1,
        "incumbent_val_loss": 0.5,
    }
    budget.steps_used = 50
    recorder.point({"x": 0.2}, val_loss=0.4)  # within 0.5 s of the last write: not rewritten
    assert json.loads(status.read_text())["points"] == 1


def test_a_running_cell_shows_its_progress_on_a_terminal(tmp_path: Path, monkeypatch) -> None:
    """End to end (a worker process, its Recorder's status file, the runner's bar): a cell of
    about 1.5 s is not silent while it runs."""
    for name, value in harness_toys.plugin_env().items():
        monkeypatch.setenv(name, value)
    suite = tmp_path / "slow.toml"
    suite.write_text(
        'seeds = [0]\n[budget]\nsteps = 1000\n[[tasks]]\nid = "q"\nkind = "toy-quad"\n'
        '[[strategies]]\nkind = "toy-random"\npoints = 5\nsleep = 0.3\n'
    )
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    summary = run_suite(load_suite(suite), tmp_path / "r")
    assert summary.ok == ["q/toy-random/0"]
    text = terminal.getvalue()
    assert "0/1 cells" in text and "1/1 cells" in text
    assert re.search(r"q/toy-random/0 [1-9][0-9]?% best \d", text), text  # mid-cell status
