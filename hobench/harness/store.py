"""The results store: `results/<suite>/runs.jsonl`, one JSON object per finished cell.

The file is an append-only log: each finished cell is one line, written with a single write,
flushed and fsynced, so a cell once recorded survives any crash, and adding a cell costs one
line however large the suite. A crash in the middle of a write can leave a torn last line (no
newline at its end): readers ignore it with a warning and the next writer cuts it off.

One writer at a time: a writer holds an exclusive `fcntl.flock` on `.runs.jsonl.lock` beside
the results file (a separate file, because `remove` replaces runs.jsonl by renaming). The
runner holds it for its whole run, so two runs on one directory never record a cell twice: the
second waits for the first (or, asked not to wait, refuses in one line naming the holder).
Readers (`show`, `report`) take no lock: they see whole lines only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from hobench.harness.failures import STORAGE_ERRNOS, StorageFull

RUNS_FILE = "runs.jsonl"
SUITE_FILE = "suite.toml"  # a copy of the suite file of the latest run
# Keys every cell record has (docs/results-schema.md); a line without them is not ours.
RECORD_KEYS = ("cell", "task", "strategy", "seed", "status")
WAIT_POLL_S = 0.2


class StoreError(ValueError):
    """A results file that cannot be read or does not match the suite; the message is one line."""


def runs_file(path: str | Path) -> Path:
    """`path` itself when it names a file, else `<path>/runs.jsonl`."""
    path = Path(path)
    return path if path.suffix == ".jsonl" else path / RUNS_FILE


def dumps(record: dict[str, Any]) -> str:
    """One strict-JSON line (NaN and infinity are refused: the cell builder maps them to null)."""
    return json.dumps(record, allow_nan=False, separators=(",", ":"))


class ResultsStore:
    def __init__(self, path: str | Path) -> None:
        self.path = runs_file(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._lock_fd: int | None = None

    # --- reading ---------------------------------------------------------------------------------
    def load(self) -> list[dict[str, Any]]:
        """All records in file order; a torn last line is left out with a warning. Raises
        StoreError naming the line of a damaged or foreign record anywhere else."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        torn = lines.pop()  # "" when the file ends with a newline, as every complete one does
        if torn.strip():
            # On stderr, not in a log: whoever reads the results must see it.
            print(
                f"hobench: warning: {self.path}:{len(lines) + 1}: ignored a torn last line "
                f"({len(torn.encode('utf-8'))} bytes, a write cut short by a crash); its cell "
                "counts as not run",
                file=sys.stderr,
            )
        return [
            self._parse(line, lineno) for lineno, line in enumerate(lines, start=1) if line.strip()
        ]

    def _parse(self, line: str, lineno: int) -> dict[str, Any]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StoreError(
                f"{self.path}:{lineno}: damaged record ({exc.msg}); another program wrote "
                "this file: delete or repair that line, then rerun"
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("cell"), str):
            raise StoreError(
                f"{self.path}:{lineno}: not a hobench cell record; "
                "delete that line or use another --results-dir"
            )
        missing = [key for key in RECORD_KEYS if key not in record]
        if missing:
            raise StoreError(
                f"{self.path}:{lineno}: cell record {record['cell']!r} lacks "
                f"{', '.join(missing)}; delete that line or rerun the cell with --force --only"
            )
        return record

    def done_keys(self) -> set[str]:
        """Keys of the cells that finished (ok or failed)."""
        return {record["cell"] for record in self.load()}

    # --- the writer's lock -----------------------------------------------------------------------
    def open_lock(self) -> int:
        """Open (creating the directory and lock file) the lock file: fails at once, with one
        line, where the results directory cannot be written."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            if not os.access(self.path.parent, os.W_OK):  # root ignores modes; others do not
                os.close(fd)
                raise PermissionError(13, "Permission denied")
        except OSError as exc:
            raise StoreError(
                f"{self.path.parent}: results directory is not writable "
                f"({exc.strerror or exc}); choose a writable --results-dir"
            ) from None
        return fd

    @contextlib.contextmanager
    def locked(
        self, wait: bool = True, on_wait: Callable[[str], None] | None = None
    ) -> Iterator[ResultsStore]:
        """Hold the exclusive writer's lock. Another holder is waited for (`on_wait` is told
        who, once) or, with `wait=False`, refused in one StoreError line."""
        if self._lock_fd is not None:  # already ours (flock does not nest across descriptors)
            yield self
            return
        fd = self.open_lock()
        try:
            told = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = self._holder(fd)
                    if not wait:
                        raise StoreError(
                            f"{self.path.parent}: another run is writing here ({holder}; lock "
                            f"{self.lock_path}); wait for it, or use another --results-dir"
                        ) from None
                    if on_wait is not None and not told:
                        on_wait(
                            f"hobench: waiting for another run on {self.path.parent} to finish "
                            f"({holder}); Ctrl-C to stop"
                        )
                        told = True
                    time.sleep(WAIT_POLL_S)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
            self._lock_fd = fd
            self._cut_torn_tail()
            yield self
        finally:
            self._lock_fd = None
            os.close(fd)  # closing the descriptor releases the lock

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            return os.pread(fd, 100, 0).decode("utf-8", "replace").strip() or "pid unknown"
        except OSError:
            return "pid unknown"

    def _cut_torn_tail(self) -> None:
        """Cut a torn last line off (warning once), so the next append starts a line."""
        try:
            with self.path.open("rb+") as handle:
                data = handle.read()
                if not data or data.endswith(b"\n"):
                    return
                keep = data.rfind(b"\n") + 1
                self.load()  # warns about the torn line it ignores
                handle.truncate(keep)
                handle.flush()
                os.fsync(handle.fileno())
        except FileNotFoundError:
            return

    # --- writing (under the lock) ----------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> None:
        """Add one record as one line: written at once, flushed and fsynced."""
        line = (dumps(record) + "\n").encode("utf-8")
        with self.locked():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StorageFull(self.path, exc, len(line)) from None
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except OSError as exc:
                _cut_back(fd, size)  # no torn line: the file is as it was before this record
                raise StorageFull(self.path, exc, len(line)) from None
            finally:
                os.close(fd)

    def remove(self, keys: Iterable[str]) -> int:
        """Drop the records of `keys` (for --force, --retry-failed); returns how many."""
        keys = set(keys)
        with self.locked():
            records = self.load()
            kept = [record for record in records if record["cell"] not in keys]
            if len(kept) != len(records):
                self._rewrite(kept)
        return len(records) - len(kept)

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace the file whole (temporary file, fsync, rename): old or new, never half."""
        write_atomic(self.path, "".join(dumps(record) + "\n" for record in records))

    def keep_suite(self, suite_path: str | Path) -> None:
        """Copy the suite file beside the results as `suite.toml`: the report reads what the
        suite asks of it (e.g. `paper_tables`) from there, and the results document their run."""
        write_atomic(self.path.parent / SUITE_FILE, Path(suite_path).read_text(encoding="utf-8"))


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data`: a regular file takes it in one write; loop for the rare short one."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _cut_back(fd: int, size: int) -> None:
    """Truncate a file back to `size` after a failed append (best effort: truncating frees
    space, so it works on a full disk)."""
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError:
        pass  # then the next writer cuts the torn line off (`_cut_torn_tail`)


def write_atomic(path: Path, content: str) -> None:
    """Write `path` whole (temporary file, fsync, rename): the old or the new, never half.
    A full or read-only disk raises StorageFull naming `path`."""
    data = content.encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise StorageFull(path, exc, len(data)) from None
        raise
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make results private to this user
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            raise StorageFull(path, exc, len(data)) from None
        raise
    _fsync_dir(path.parent)  # make the rename itself durable


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)
