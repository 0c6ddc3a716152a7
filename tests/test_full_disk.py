"""A full disk (injected ENOSPC) stops the run in one line naming the path; what was written
stays, nothing torn or false is recorded, and a rerun resumes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

from hobench.cli import main
from hobench.harness import store as store_module
from hobench.harness.failures import StorageFull
from hobench.harness.runner import run_suite
from hobench.harness.store import ResultsStore, write_atomic
from hobench.harness.suite import load_suite
from tests import harness_toys
from tests.conftest import ROOT
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


def _mount_namespace() -> bool:
    """Whether this process may make its own mount namespace (unshare -rm: a user namespace
    mapped to root), where a test can mount a tiny tmpfs without touching the machine's."""
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


def in_own_mounts(script: str, tmp_path, suite) -> subprocess.CompletedProcess:
    """Run `script` in a mount namespace of its own, with a mount point $DISK, the suite $SUITE,
    $OUT for what it leaves; skip where it exits 77 or 78 (mounting or remounting refused)."""
    (tmp_path / "disk").mkdir()
    env = {
        **harness_toys.subprocess_env(),
        "DISK": str(tmp_path / "disk"),
        "OUT": str(tmp_path),
        "SUITE": str(suite),
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["unshare", "-rm", "bash", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a net only: CI machines run at load 6-10
    )
    if done.returncode in (77, 78):  # a user namespace, but mounting in it refused (AppArmor)
        what = "mount a tmpfs" if done.returncode == 77 else "remount a tmpfs read-only"
        pytest.skip(f"cannot {what} here: {done.stderr.strip()[-300:]}")
    return done


REAL_DISK = """
set -u
mount -t tmpfs -o size=64k tmpfs "$DISK" || exit 77  # not allowed here: skipped
"$PYTHON" -m hobench run "$SUITE" --quiet --results-dir "$DISK/results"
echo "rc=$?" >"$OUT/full.rc"
cp "$DISK/results/runs.jsonl" "$OUT/full.jsonl"
mount -o remount,size=16m "$DISK" || exit 1
"$PYTHON" -m hobench run "$SUITE" --quiet --results-dir "$DISK/results"
echo "rc=$?" >"$OUT/resumed.rc"
cp "$DISK/results/runs.jsonl" "$OUT/resumed.jsonl"
"""


@pytest.mark.skipif(
    not _mount_namespace(),
    reason="no mount namespace here (unshare -rm fails): the injected-ENOSPC tests stand in",
)
def test_a_real_64_kib_disk_stops_the_run_in_one_line_and_a_rerun_resumes(tmp_path):
    """The reported case, on a real filesystem: a 64 KiB tmpfs mounted in the test's own mount
    namespace fills up mid-suite. The run exits 2 with one line naming the path that filled and
    the space free there, records no cell falsely and tears no line; grown to 16 MiB, the same
    command runs only the missing cells, the first run's records kept as they were."""
    seeds = list(range(40))
    suite = write_suite(tmp_path, strategy("toy-random"), seeds=str(seeds))
    done = in_own_mounts(REAL_DISK, tmp_path, suite)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "full.rc").read_text().strip() == "rc=2", done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("hobench: error:")]
    assert len(said) == 1 and said[0].startswith("hobench: error: StorageFull: "), done.stderr
    # The store's append or a worker's scratch file, whichever met the full disk first.
    assert f"StorageFull: {tmp_path / 'disk' / 'results'}" in said[0], said[0]
    assert "bytes free there" in said[0], said[0]
    assert "Traceback" not in done.stderr
    full = (tmp_path / "full.jsonl").read_text()
    assert full == "" or full.endswith("\n")  # no torn line
    first = [json.loads(line) for line in full.splitlines()]
    assert 0 < len(first) < len(seeds)  # it filled up mid-suite
    assert all(r["status"] == "ok" for r in first)  # nothing recorded as failed
    assert (tmp_path / "resumed.rc").read_text().strip() == "rc=0", done.stderr[-3000:]
    resumed = (tmp_path / "resumed.jsonl").read_text()
    assert resumed.startswith(full)  # the first run's records, untouched
    records = [json.loads(line) for line in resumed.splitlines()]
    assert sorted(r["seed"] for r in records) == seeds
    assert all(r["status"] == "ok" for r in records)


READ_ONLY_DISK = """
set -u
mount -t tmpfs -o size=1m tmpfs "$DISK" || exit 77  # not allowed here: skipped
mkdir "$DISK/results"
mount -o remount,ro "$DISK" || exit 78  # mounting, but not remounting read-only, allowed
"$PYTHON" -m hobench run "$SUITE" --results-dir "$DISK/results"
"""


@pytest.mark.skipif(not _mount_namespace(), reason="no mount namespace here (unshare -rm fails)")
def test_a_read_only_mount_is_refused_in_one_line_before_any_cell_even_for_root(tmp_path):
    """Root writes into a directory without write permission (test_runner's read-only case
    skips as root), not into a read-only filesystem: the refusal as root, on a real mount."""
    done = in_own_mounts(READ_ONLY_DISK, tmp_path, write_suite(tmp_path, strategy("toy-random")))
    results = tmp_path / "disk" / "results"
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"hobench: error: StoreError: {results}: results directory is not writable "
        "(Read-only file system); choose a writable --results-dir"
    ]
    assert done.stdout == ""  # no cell started, no progress line
