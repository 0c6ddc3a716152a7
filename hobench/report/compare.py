"""`compare`: a regression gate between two results directories (baseline, current).

Per task × strategy it checks accuracy against the baseline's bootstrap CI, time normalised by
each machine's calibration workload, and peak memory; per cell it checks that nothing present in
the baseline went missing or started failing. Overrun past a seconds budget is shown beside them,
for information: it says a time budget was not a hard limit, not that the code got worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hobench.report.load import load_runs
from hobench.report.stats import bootstrap_ci

# With one seed on a side there is no spread to build a CI from; allow this much accuracy drop.
SINGLE_SEED_TOLERANCE = 0.01

Problem = tuple[str, str]  # (kind: missing | failed | accuracy | time | memory, message)


@dataclass
class CompareResult:
    """The comparison table (one row per task × strategy) and the regressions found."""

    table: pd.DataFrame
    regressions: list[str]
    notes: list[str] = field(default_factory=list)
    time_ratio: float = 1.5
    memory_ratio: float = 1.5

    @property
    def ok(self) -> bool:
        return not self.regressions


def _median(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.median()) if len(values) else math.nan


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else math.nan


def _side(cells: pd.DataFrame) -> dict[str, Any]:
    """What one side contributes to a row: ok seeds, accuracy CI, mean time, overrun, memory."""
    ok = cells[cells["status"] == "ok"]
    mean, low, _ = bootstrap_ci(ok["final.test_acc"])
    return {
        "n": len(ok),
        "acc": mean,
        "acc_low": low,
        "wall_s": _mean(ok["resources.wall_s"]),
        "overrun_s": _mean(ok["resources.overrun_s"]),
        "calibration_s": _median(ok["calibration_s"]),
        "rss_mb": _mean(ok["resources.peak_rss_mb"]),
    }


def _environment(runs: pd.DataFrame) -> set[tuple[Any, ...]]:
    """(torch version, device, threads) of each run: what a time or memory figure depends on
    beyond the code (a CUDA build of torch alone triples a worker's resident memory)."""
    environments = set()
    for manifest in runs.get("manifest", pd.Series(dtype=object)):
        manifest = manifest if isinstance(manifest, dict) else {}
        packages = manifest.get("packages") or {}
        environments.add((packages.get("torch"), manifest.get("device"), manifest.get("threads")))
    return environments


def _describe(environments: set[tuple[Any, ...]]) -> str:
    return "; ".join(
        f"torch {torch}, {device}, {threads} thread(s)"
        for torch, device, threads in sorted(environments, key=str)
    )


def _ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator) or denominator <= 0:
        return math.nan
    return numerator / denominator


def _compare_row(
    name: str,
    base: dict[str, Any],
    cur: dict[str, Any],
    acc_tolerance: float | None,
    time_ratio: float,
    memory_ratio: float,
    resources_comparable: bool = True,
) -> tuple[dict[str, Any], list[Problem]]:
    """One table row and the regressions it shows. Time and memory are gated only when
    `resources_comparable` (same torch build, device and threads on both sides)."""
    tolerance = acc_tolerance
    if tolerance is None:
        tolerance = 0.0 if min(base["n"], cur["n"]) >= 2 else SINGLE_SEED_TOLERANCE
    threshold = base["acc_low"] - tolerance
    calibrated = base["calibration_s"] > 0 and cur["calibration_s"] > 0  # False for NaN
    if calibrated:
        time = _ratio(cur["wall_s"] / cur["calibration_s"], base["wall_s"] / base["calibration_s"])
    else:
        time = _ratio(cur["wall_s"], base["wall_s"])
    memory = _ratio(cur["rss_mb"], base["rss_mb"])
    problems: list[Problem] = []
    if cur["acc"] < threshold:  # False when either is NaN: nothing to compare
        message = (
            f"{name}: accuracy {cur['acc']:.2%} < baseline CI low {base['acc_low']:.2%} "
            f"- tolerance {tolerance:.2%}"
        )
        problems.append(("accuracy", message))
    if time > time_ratio and resources_comparable:
        basis = "calibrated" if calibrated else "raw, no calibration_s"
        problems.append(("time", f"{name}: time ×{time:.2f} ({basis}) > ×{time_ratio:g}"))
    if memory > memory_ratio and resources_comparable:
        problems.append(("memory", f"{name}: peak RSS ×{memory:.2f} > ×{memory_ratio:g}"))
    row = {
        "n_base": base["n"],
        "n_current": cur["n"],
        "acc_base": base["acc"],
        "acc_base_low": base["acc_low"],
        "acc_current": cur["acc"],
        "acc_tolerance": tolerance,
        "time_ratio": time,
        "time_basis": "–" if math.isnan(time) else ("calibrated" if calibrated else "raw"),
        "overrun_base": base["overrun_s"],  # informational, never a regression
        "overrun_current": cur["overrun_s"],
        "memory_ratio": memory,
    }
    return row, problems


def _cell_problems(base: pd.DataFrame, cur: pd.DataFrame) -> dict[tuple[str, str], list[Problem]]:
    """Cells of the baseline that are missing from current, or ok there and failed here."""
    status = dict(zip(cur["cell"], cur["status"], strict=True))
    errors = dict(zip(cur["cell"], cur["error"], strict=True))
    problems: dict[tuple[str, str], list[Problem]] = {}
    for cell, task, strategy, was in zip(
        base["cell"], base["task"], base["strategy"], base["status"], strict=True
    ):
        if cell not in status:
            problem = ("missing", f"cell {cell} missing in current")
            problems.setdefault((task, strategy), []).append(problem)
        elif was == "ok" and status[cell] == "failed":
            problem = ("failed", f"cell {cell} failed in current: {errors[cell]}")
            problems.setdefault((task, strategy), []).append(problem)
    return problems


def compare(
    baseline_dir: str | Path,
    current_dir: str | Path,
    acc_tolerance: float | None = None,
    time_ratio: float = 1.5,
    memory_ratio: float = 1.5,
) -> CompareResult:
    """Compare a current results directory against a baseline one.

    Per task × strategy (ok cells only):
    - accuracy regresses when the current mean test accuracy falls below the baseline's 95 %
      bootstrap CI lower bound minus `acc_tolerance` (default 0.0 when both sides have >= 2
      seeds, `SINGLE_SEED_TOLERANCE` when a side has one);
    - time regresses when (current mean wall_s / current calibration_s) over (baseline mean wall_s
      / baseline calibration_s) exceeds `time_ratio`; without calibration_s on either side the
      raw times are compared and the table's time_basis says "raw";
    - memory regresses when the mean peak_rss_mb ratio exceeds `memory_ratio`.
    A cell present in the baseline but missing in current, or ok there but failed here, is a
    regression too. Pairs only in current are listed as "new". The mean overrun_s of each side
    (seconds past a seconds budget) is in the table, for information only.
    """
    base, cur = load_runs(baseline_dir), load_runs(current_dir)
    base_env, cur_env = _environment(base), _environment(cur)
    comparable = base_env == cur_env
    cell_problems = _cell_problems(base, cur)
    keys = list(dict.fromkeys(zip(base["task"], base["strategy"], strict=True)))
    keys += [
        k for k in dict.fromkeys(zip(cur["task"], cur["strategy"], strict=True)) if k not in keys
    ]
    rows, regressions = [], []
    for task, strategy in keys:
        name = f"{task}/{strategy}"
        b = base[(base["task"] == task) & (base["strategy"] == strategy)]
        c = cur[(cur["task"] == task) & (cur["strategy"] == strategy)]
        row, problems = _compare_row(
            name, _side(b), _side(c), acc_tolerance, time_ratio, memory_ratio, comparable
        )
        problems = cell_problems.get((task, strategy), []) + problems
        kinds = list(dict.fromkeys(kind for kind, _ in problems))
        status = "new" if b.empty else ("REGRESSION: " + ", ".join(kinds) if kinds else "ok")
        rows.append({"task": task, "strategy": strategy, **row, "status": status})
        regressions += [message for _, message in problems]
    notes = []
    if not comparable:
        notes.append(
            f"time and memory shown, not gated: the baseline ran with {_describe(base_env)}, "
            f"the current run with {_describe(cur_env)}"
        )
    table = pd.DataFrame(rows)
    if len(table) and (table["time_basis"] == "raw").any():
        notes.append("calibration_s missing on a side: times compared raw (time_basis = raw)")
    return CompareResult(table, regressions, notes, time_ratio, memory_ratio)


COLUMNS = (
    ("task", "task"),
    ("strategy", "strategy"),
    ("seeds", "seeds b/c"),
    ("acc_base", "acc base %"),
    ("acc_base_low", "CI low %"),
    ("acc_current", "acc now %"),
    ("acc_tolerance", "tol %"),
    ("time_ratio", "time ×"),
    ("time_basis", "time basis"),
    ("overrun", "overrun s b/c"),
    ("memory_ratio", "RSS ×"),
    ("status", "status"),
)


def _overrun_text(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds:.1f}"


def _cell(key: str, row: pd.Series) -> str:
    if key == "seeds":
        return f"{row['n_base']}/{row['n_current']}"
    if key == "overrun":
        return f"{_overrun_text(row['overrun_base'])}/{_overrun_text(row['overrun_current'])}"
    value = row[key]
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "–"
    if key.startswith("acc"):
        return f"{100 * value:.2f}"
    return f"{value:.2f}"


def format_compare(result: CompareResult) -> str:
    """The comparison as a fixed-width terminal table, then the regressions and notes."""
    header = [label for _, label in COLUMNS]
    body = [[_cell(key, row) for key, _ in COLUMNS] for _, row in result.table.iterrows()]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 or i == len(cells) - 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [line(header), line(["-" * w for w in widths]), *(line(cells) for cells in body)]
    lines.append("")
    lines.append(
        f"Checks: accuracy below baseline CI low - tol; time ratio > ×{result.time_ratio:g} "
        f"(wall_s / calibration_s); peak RSS ratio > ×{result.memory_ratio:g}; missing or "
        "newly failed cells. Overrun (mean seconds past a seconds budget, baseline/current) is "
        "shown, not checked."
    )
    if result.regressions:
        lines.append(f"{len(result.regressions)} regression(s):")
        lines += [f"  - {text}" for text in result.regressions]
    else:
        lines.append("No regressions.")
    lines += [f"Note: {note}" for note in result.notes]
    return "\n".join(lines)
