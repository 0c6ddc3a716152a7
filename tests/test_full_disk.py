"""A full disk (injected ENOSPC) stops the run in one line naming the path; what was written
stays, nothing torn or false is recorded, and a rerun resumes."""

from __future__ import annotations

import errno
import os

import pytest

from hobench.cli import main
from hobench.harness import store as store_module
from hobench.harness.failures import StorageFull
from hobench.harness.runner import run_suite
from hobench.harness.store import ResultsStore, write_atomic
from hobench.harness.suite import load_suite
from tests import harness_toys
from tests.test_runner import strategy, write_suite

ENOSPC = "No space left on device"


def record(key: str) -> dict:
    return {"cell": key, "task": "q", "strategy": "s", "seed": 0, "status": "ok"}


def half_then_full(fd: int, data: bytes) -> None:
    """What a disk filling up mid-write does: part of the bytes land, then ENOSPC."""
    os.write(fd, data[: len(data) // 2])
    raise OSError(errno.ENOSPC, ENOSPC)


@pytest.fixture(autouse=True)
def toy_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in harness_toys.plugin_env().items():
        monkeypatch.setenv(name, value)


def test_an_append_on_a_full_disk_leaves_the_file_as_it_was(tmp_path, monkeypatch, capsys):
    store = ResultsStore(tmp_path)
    store.append(record("a"))
    store.append(record("b"))
    before = store.path.read_bytes()
    monkeypatch.setattr(store_module, "_write_all", half_then_full)
    with pytest.raises(StorageFull) as error:
        store.append(record("c"))
    size = len(store_module.dumps(record("c"))) + 1
    assert str(error.value).startswith(f"{store.path}: could not write {size} bytes ({ENOSPC}; ")
    assert str(error.value).endswith(
        "free space or choose another --results-dir, then rerun the same command to resume "
        "(finished cells are kept)"
    )
    assert store.path.read_bytes() == before  # no torn line
    assert [r["cell"] for r in store.load()] == ["a", "b"]
    assert capsys.readouterr().err == ""  # and so no torn-line warning either


def test_an_atomic_write_on_a_full_disk_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "suite.toml"
    path.write_text("old")
    monkeypatch.setattr(store_module, "_write_all", half_then_full)
    with pytest.raises(StorageFull, match=rf"^{path}: could not write 3 bytes \({ENOSPC}"):
        write_atomic(path, "new")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "suite.toml"
    ]


def test_a_run_stops_at_a_full_results_disk_and_a_rerun_resumes(tmp_path, monkeypatch):
    suite = load_suite(write_suite(tmp_path, strategy("toy-random"), seeds="[0, 1, 2]"))
    results = tmp_path / "results"
    appends, real_append = [], ResultsStore.append

    def fills_up_at_the_second(self, rec):
        appends.append(rec["cell"])
        if len(appends) == 2:
            monkeypatch.setattr(store_module, "_write_all", half_then_full)
        return real_append(self, rec)

    monkeypatch.setattr(ResultsStore, "append", fills_up_at_the_second)
    with pytest.raises(StorageFull, match=rf"^{results / 'runs.jsonl'}: could not write"):
        run_suite(suite, results, quiet=True)
    kept = ResultsStore(results).load()
    assert [(r["cell"], r["status"]) for r in kept] == [("q/toy-random/0", "ok")]
    monkeypatch.undo()
    for name, value in harness_toys.plugin_env().items():
        monkeypatch.setenv(name, value)
    summary = run_suite(suite, results, quiet=True)
    assert summary.skipped == 1 and sorted(summary.ok) == ["q/toy-random/1", "q/toy-random/2"]
    assert len(ResultsStore(results).load()) == 3


def test_a_worker_meeting_a_full_disk_stops_the_run_in_one_line_recording_nothing(tmp_path, capsys):
    suite = write_suite(tmp_path, strategy("toy-full-disk") + strategy("toy-random"))
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results-dir", str(results), "--quiet"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"hobench: error: StorageFull: {results / '.work'}: could not write (a worker's record "
        "or scratch file was refused; "
    )
    assert ResultsStore(results).load() == []  # not a false "failed" record
