"""Failures whose message is the cell's recorded error as is (no exception type in front)."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DIVERGED_FIX = "lower the learning-rate range"
# The final protocol trained the answer and got a non-finite loss: the search's own points may
# have been finite (an online run that blew up late, a replay longer than the search's runs).
FINAL_DIVERGED = (
    "non-finite validation loss: the final training on the chosen hyperparameters diverged; "
    "lower the learning rate (the task's default, or its range) or a gradient strategy's hyper_lr"
)
# I/O errors that say the storage, not the cell, failed: a full disk or quota, a read-only mount.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
# A worker's exit status for "could not write to the results directory": the runner stops the
# run instead of recording the cell (a record saying it failed would be false).
EXIT_STORAGE = 75  # EX_TEMPFAIL


class StorageFull(OSError):
    """The results directory's storage refused a write (full, over quota, read-only): the run
    stops, what was written before stays, nothing half-written or false is left behind. An
    OSError with the original errno, so that a worker recognises it as a storage failure too."""

    def __init__(self, path: Path, exc: OSError, size: int | None = None) -> None:
        what = f"could not write {size} bytes" if size is not None else "could not write"
        try:
            free = f"; {shutil.disk_usage(path.parent).free} bytes free there"
        except OSError:
            free = ""
        super().__init__(
            f"{path}: {what} ({exc.strerror or exc}{free}); free space or choose another "
            "--results-dir, then rerun the same command to resume (finished cells are kept)"
        )
        self.errno = exc.errno  # the message stays as is: OSError shows errno only with strerror


def storage_error(exc: BaseException) -> bool:
    """Whether `exc` is the storage failing (full, over quota, read-only), not the cell."""
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


class CellFailure(Exception):
    """A run that finished but whose result is unusable; its message is the error as is."""


class Diverged(CellFailure):
    """Every unit of a search ran and diverged: the budget is not what failed, the range is."""

    def __init__(self, count: int, unit: str, what: str = "non-finite validation loss") -> None:
        units = unit if count == 1 else f"{unit}s"
        super().__init__(f"all {count} {units} diverged ({what}); {DIVERGED_FIX}")


def all_diverged(points: Sequence[dict[str, Any]], unit: str, what: str | None = None):
    """Raise Diverged when a search recorded points and every one of them failed."""
    if points and all(point["failed"] for point in points):
        raise Diverged(len(points), unit, *([what] if what else []))
