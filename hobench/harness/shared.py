"""Values that several cells of one run compute identically, computed once per run.

Hyper-cleaning's final protocol picks a retraining schedule and trains its Oracle and Baseline
reference rows; for one seed these are the same for every strategy and every R, and they cost
about as much as the search budget itself. A worker stores such a value as JSON in the run's
scratch folder (`<results>/.work/shared/`, removed when the run ends and before the next one
starts, so no value outlives the code that computed it); the other cells of the run read it.
Python's JSON round-trips floats exactly, so a read value is bit-identical to a recomputed one.
Outside a run (tests, direct use) nothing is stored and every call computes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hobench.harness.store import write_atomic

_folder: Path | None = None


def use_folder(folder: Path | None) -> None:
    """Store and read shared values in `folder` (None: compute every time)."""
    global _folder
    _folder = folder


def computed_once(key: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """`compute()`, or the value a cell of this run already stored under `key` (JSON data)."""
    if _folder is None:
        return compute()
    text = json.dumps(key, sort_keys=True)
    path = _folder / (hashlib.sha256(text.encode()).hexdigest()[:32] + ".json")
    key = json.loads(text)  # as stored: tuples become lists
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored["key"] == key:
            return stored["value"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not there yet: compute it
    value = compute()
    # Two workers may compute the same value at once: each renames a whole file into place.
    write_atomic(path, json.dumps({"key": key, "value": value}))
    return value
