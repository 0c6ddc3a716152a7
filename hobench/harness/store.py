"""The results store: `results/<suite>/runs.jsonl`, one JSON object per finished cell.

Every change rewrites the whole file to a temporary file in the same directory, fsyncs it and
renames it into place, so a run killed at any instant leaves the old or the new complete file,
never a partial line. Only the runner's parent process writes; workers hand it their records.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RUNS_FILE = "runs.jsonl"


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

    def load(self) -> list[dict[str, Any]]:
        """All records in file order; raises StoreError naming the line of a damaged record."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        records = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
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
            records.append(record)
        return records

    def done_keys(self) -> set[str]:
        """Keys of the cells that finished (ok or failed)."""
        return {record["cell"] for record in self.load()}

    def append(self, record: dict[str, Any]) -> None:
        self._write([*self.load(), record])

    def remove(self, keys: Iterable[str]) -> int:
        """Drop the records of `keys` (for --force); returns how many were dropped."""
        keys = set(keys)
        records = self.load()
        kept = [record for record in records if record["cell"] not in keys]
        if len(kept) != len(records):
            self._write(kept)
        return len(records) - len(kept)

    def _write(self, records: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        content = "".join(dumps(record) + "\n" for record in records)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would make results private to this user
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.path.parent)  # make the rename itself durable


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
