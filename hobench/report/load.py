"""Read `runs.jsonl` (results schema version 1) into pandas frames.

A report never trains: everything it shows comes from these files. A malformed line is an error,
not a warning, because a silently dropped cell would change the numbers a reader trusts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from hobench.report.errors import ReportError

RUNS_FILE = "runs.jsonl"
SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema", "cell", "task", "strategy", "seed", "status")
STATUSES = ("ok", "failed")
# Budget limits, each flattened to `budget.<limit>`; the first reached ends a cell's search.
BUDGET_LIMITS = ("cost", "seconds", "steps")

# Identity columns copied as they are from each record.
ID_COLUMNS = (
    "suite",
    "cell",
    "task",
    "task_kind",
    "strategy",
    "strategy_kind",
    "seed",
    "status",
    "error",
)
# Numeric columns every runs frame has, even when no record carries them, so that tables and
# plots can rely on them (absent values are NaN: records written before a field existed load
# with NaN there rather than failing). `cost` is in plain-training equivalents; FLOP counts become
# floats, exact up to 2**53 and close enough beyond for a report.
NUMERIC_COLUMNS = (
    *(f"budget.{limit}" for limit in BUDGET_LIMITS),
    "final.test_acc",
    "final.val_loss",
    "final.val_acc",
    "final.regret",
    "final.test_mse",  # regression tasks' test metric
    "final.f1",
    "final.n_test",
    "resources.wall_s",
    "resources.cpu_s",
    "resources.overrun_s",
    "resources.inner_steps",
    "resources.cost",
    "resources.flops",
    "resources.plain_run_flops",
    "resources.units",
    "resources.unit_cost",
    "resources.unit_s",
    "resources.peak_rss_mb",
    "resources.baseline_rss_mb",
    "resources.added_rss_mb",
    "resources.cuda_peak_mb",
    "calibration_s",
)
POINT_COLUMNS = (
    "elapsed_s",
    "inner_steps",
    "cost",
    "val_loss",
    "val_acc",
    "test_acc",
    "incumbent_val_loss",
    "incumbent_test_acc",
    "incumbent_regret",  # derived: incumbent_val_loss − f(λ*) where the task knows its optimum
)
TRAJECTORY_ID_COLUMNS = ("cell", "task", "task_kind", "strategy", "strategy_kind", "seed", "status")


def runs_path(source: str | Path) -> Path:
    """The `runs.jsonl` file named by `source`: the file itself or a directory holding it."""
    path = Path(source)
    if path.is_dir():
        path = path / RUNS_FILE
    if not path.is_file():
        raise ReportError(f"{path}: no results file (give {RUNS_FILE} or a directory holding it)")
    return path


def _check_record(record: Any, path: Path, lineno: int) -> None:
    where = f"{path}:{lineno}"
    if not isinstance(record, dict):
        raise ReportError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise ReportError(f"{where}: missing key(s) {', '.join(missing)}")
    if record["schema"] != SCHEMA_VERSION:
        raise ReportError(f"{where}: schema {record['schema']!r}, expected {SCHEMA_VERSION}")
    if record["status"] not in STATUSES:
        raise ReportError(f"{where}: status {record['status']!r} is not one of {STATUSES}")


def read_records(source: str | Path) -> list[dict[str, Any]]:
    """All cell records of a results file, validated, one per cell.

    Raises `ReportError` naming the file and line for a line that is not a valid record.
    When a cell appears twice the later line wins: a rerun of a cell replaces its result.
    """
    path = runs_path(source)
    by_cell: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if not line.endswith("\n"):  # a torn last line: a crash cut its write short
                    print(
                        f"hobench: warning: {path}:{lineno}: ignored a torn last line",
                        file=sys.stderr,
                    )
                    break
                raise ReportError(
                    f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})"
                ) from None
            _check_record(record, path, lineno)
            by_cell.pop(record["cell"], None)  # keep file order of the surviving line
            by_cell[record["cell"]] = record
    return list(by_cell.values())


def _as_numeric(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    for column in columns:
        if column not in frame:
            frame[column] = float("nan")
            continue
        try:
            frame[column] = pd.to_numeric(frame[column]).astype(float)
        except (TypeError, ValueError) as exc:
            raise ReportError(f"{what}: column {column} is not numeric ({exc})") from None
    return frame


def _run_row(record: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {key: record.get(key) for key in ID_COLUMNS}
    row["task_params"] = record.get("task_params") or {}
    row["strategy_params"] = record.get("strategy_params") or {}
    # Whether the cell ran the engine's compiled path; records from before suites compiled by
    # default say so only through their strategy's `compile`.
    row["compiled"] = bool(record.get("compile", row["strategy_params"].get("compile", False)))
    budget = record.get("budget") or {}
    for limit in BUDGET_LIMITS:
        row[f"budget.{limit}"] = budget.get(limit)
    for key, value in (record.get("final") or {}).items():
        row[f"final.{key}"] = value
    for key, value in (record.get("resources") or {}).items():
        row[f"resources.{key}"] = value
    manifest = record.get("manifest") or {}
    row["manifest"] = manifest
    row["calibration_s"] = manifest.get("calibration_s")
    row["n_points"] = len(record.get("trajectory") or [])
    return row


def runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per cell; `final.*` and `resources.*` flattened into dotted columns.

    Nested values stay Python objects: `final.rows` (reference rows), lists such as
    `final.lambda_clean`, and the `task_params`, `strategy_params` and `manifest` dicts.
    """
    frame = pd.DataFrame([_run_row(record) for record in records])
    for column in ID_COLUMNS + ("task_params", "strategy_params", "manifest", "n_points"):
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    return _as_numeric(frame, NUMERIC_COLUMNS, "runs")


def _optimum(final: dict[str, Any]) -> float | None:
    """f(λ*), the validation loss at the task's known optimum: the final validation loss less
    its regret (regret = f(λ) − f(λ*)); None where the task reports no regret."""
    val_loss, regret = final.get("val_loss"), final.get("regret")
    if not isinstance(val_loss, int | float) or not isinstance(regret, int | float):
        return None
    return float(val_loss) - float(regret)


def trajectories_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Long format: one row per trajectory point, with the cell's identity and `point` index."""
    rows = []
    for record in records:
        ident = {key: record.get(key) for key in TRAJECTORY_ID_COLUMNS}
        optimum = _optimum(record.get("final") or {})
        for index, point in enumerate(record.get("trajectory") or []):
            row = {**ident, "point": index, **point}
            incumbent = point.get("incumbent_val_loss")
            if optimum is not None and isinstance(incumbent, int | float):
                row["incumbent_regret"] = incumbent - optimum
            rows.append(row)
    frame = pd.DataFrame(rows)
    for column in TRAJECTORY_ID_COLUMNS + ("point", "failed", "hp"):
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    return _as_numeric(frame, POINT_COLUMNS, "trajectories")


def load_runs(source: str | Path) -> pd.DataFrame:
    """One row per cell of `source` (a `runs.jsonl` file or a directory holding one)."""
    return runs_frame(read_records(source))


def load_trajectories(source: str | Path) -> pd.DataFrame:
    """Every trajectory point of `source`, long format (cell, task, strategy, seed, ...)."""
    return trajectories_frame(read_records(source))
