"""Failures whose message is the cell's recorded error as is (no exception type in front)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DIVERGED_FIX = "lower the learning-rate range"


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
