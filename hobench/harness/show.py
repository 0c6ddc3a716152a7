"""A quick terminal table of results: one block per task, one row per strategy.

Means are over the cells that finished ok; failed cells are counted, never averaged in.
For the full report (ranks, confidence intervals, plots) use `hobench report`.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from typing import Any

COLUMNS: tuple[tuple[str, str, str], ...] = (
    # header, path in the record, format
    ("test_acc", "final.test_acc", ".4f"),
    ("val_loss", "final.val_loss", ".4g"),
    ("regret", "final.regret", ".3g"),
    ("wall_s", "resources.wall_s", ".1f"),
    ("overrun_s", "resources.overrun_s", ".1f"),  # seconds past a seconds budget
    ("cost", "resources.cost", ".3g"),  # plain-training equivalents spent
    ("steps", "resources.inner_steps", ".0f"),
    ("added_mb", "resources.added_rss_mb", ".1f"),  # memory the cell added over its worker
)


def _get(record: dict[str, Any], path: str) -> float | None:
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _mean(records: list[dict[str, Any]], path: str) -> float | None:
    values = [v for v in (_get(r, path) for r in records) if v is not None]
    return statistics.fmean(values) if values else None


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    # First column (names) left-aligned, numbers right-aligned.
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _grouped(
    records: list[dict[str, Any]], key: Callable[[dict[str, Any]], str]
) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return groups  # insertion order: the order cells were run


def summary_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task × strategy: cells ok and failed, and the means `format_table` prints (None
    where no ok cell has the value), keyed by column header."""
    rows = []
    for task, task_records in _grouped(records, lambda r: str(r.get("task"))).items():
        for strategy, cells in _grouped(task_records, lambda r: str(r.get("strategy"))).items():
            ok = [r for r in cells if r.get("status") == "ok"]
            row: dict[str, Any] = {"task": task, "strategy": strategy}
            row.update(ok=len(ok), failed=len(cells) - len(ok))
            row.update({header: _mean(ok, path) for header, path, _ in COLUMNS})
            rows.append(row)
    return rows


def table_json(records: list[dict[str, Any]]) -> str:
    """`summary_rows` as a JSON document: {"rows": [...]}."""
    return json.dumps({"rows": summary_rows(records)}, indent=2)


def format_table(records: list[dict[str, Any]]) -> str:
    """Per task: strategy, seeds ok/failed and mean final metrics and resources."""
    if not records:
        return "(no results)"
    blocks = []
    for task, task_records in _grouped(records, lambda r: str(r.get("task"))).items():
        kinds = {str(r.get("task_kind")) for r in task_records}
        title = f"task {task}" + (f" ({', '.join(sorted(kinds))})" if kinds != {task} else "")
        columns = [c for c in COLUMNS if c[0] != "regret" or _mean(task_records, c[1]) is not None]
        rows = [["strategy", "ok", "failed", *(header for header, _, _ in columns)]]
        for strategy, cells in _grouped(task_records, lambda r: str(r.get("strategy"))).items():
            ok = [r for r in cells if r.get("status") == "ok"]
            means = [_mean(ok, path) for _, path, _ in columns]
            rows.append(
                [
                    strategy,
                    str(len(ok)),
                    str(len(cells) - len(ok)),
                    *(
                        "-" if m is None else format(m, fmt)
                        for m, (_, _, fmt) in zip(means, columns, strict=True)
                    ),
                ]
            )
        blocks.append("\n".join([title, *_align(rows)]))
    return "\n\n".join(blocks)
