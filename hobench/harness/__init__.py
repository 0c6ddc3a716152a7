"""The harness: budget, recorder, suites, measurement, cell runner, results store and runner.

    suite.py    TOML suites → validated `Suite` → `Cell`s
    runner.py   `run_suite`: each cell in a fresh worker process (worker.py → cell.py)
    store.py    `results/<suite>/runs.jsonl`, written atomically
    measure.py  memory, device, calibration, manifest
    show.py     a quick terminal table

Names are imported lazily so that `from hobench.harness.budget import Budget` (which every
strategy does) does not pull in the runner.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Budget": "budget",
    "BudgetError": "budget",
    "Recorder": "recorder",
    "Cell": "suite",
    "Suite": "suite",
    "SuiteError": "suite",
    "load_suite": "suite",
    "ResultsStore": "store",
    "StoreError": "store",
    "RunSummary": "runner",
    "run_suite": "runner",
    "run_cell": "cell",
    "format_table": "show",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
