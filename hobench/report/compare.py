"""`compare`: a regression gate between two results directories (baseline, current).

Per task × strategy it checks every final metric the task reports (test accuracy, regret, F1,
losses, ...), time normalised by each machine's calibration workload, and the memory a cell adds
over its worker's baseline; per cell it checks that nothing present in the baseline went missing
or started failing. Each gate is applied only where it means the same on both sides:

- metrics are compared exactly (seed by seed) when both sides ran the row under deterministic
  budgets (cost or steps, no seconds) on the same torch build, device and threads: such a rerun is
  bit-identical, so any value worse than the baseline's is a regression. Otherwise the current
  mean must stay inside the baseline's bootstrap CI (minus a tolerance) on the worse side;
- time only when torch build, device and threads match, both sides carry the same version of
  the calibration workload, and every calibration of both runs lies within
  `CALIBRATION_TOLERANCE` of the others: a calibration that moved says the machines, or the load
  on them, differ, and a time ratio would then measure that, not the code. Otherwise time is
  "not compared": no ratio is printed and time never fails the gate;
- memory as `resources.added_rss_mb` (what the cell adds over its worker's RSS after imports),
  when both sides have it and ran on the same kind of device; older records only carry the
  process's peak RSS, which mostly measures the imports (a CUDA build of torch alone triples it).

Two different suites are refused (`SuiteMismatch`) unless `allow_different_suites`; differing
versions, commits and machines are stated in the header. Overrun past a seconds budget is shown,
for information: it says a time budget was not a hard limit, not that the code got worse.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hobench.registry import STRATEGIES, TASKS
from hobench.report.errors import ReportError
from hobench.report.load import load_runs
from hobench.report.stats import bootstrap_ci

# With one seed on a side there is no spread to build a CI from; allow this much of a worse
# accuracy-like metric (absolute) or of a worse loss-like one (relative to the baseline mean).
SINGLE_SEED_TOLERANCE = 0.01
# Memory grows by more than the ratio AND by more than this many MB to be a regression: a cell
# that adds 2 MB and then 4 MB has not regressed, its allocator has.
MEMORY_FLOOR_MB = 16.0
# Time is gated only when the largest calibration of the two runs is within this factor of the
# smallest. Two quiet runs on one machine agree to a few percent; a loaded one does not.
CALIBRATION_TOLERANCE = 1.25
# A row whose cells average under this many seconds on both sides is not timed: a 0.1 s cell's
# wall is the scheduler's (the smoke suite's 0.05-0.4 s cells ran x2.9-3.7 slower under
# make test than minutes before on the same quiet machine, with the same calibration).
TIME_FLOOR_S = 1.0
TOO_SHORT = "too short"
NOT_COMPARED = "not compared"
# A calibration measured at a run's start misses load that comes and goes during it (under
# make test at load 8 the smoke cells ran x3-4.8 slower with calibrations x1.22 apart). So each
# cell records its CPU seconds too, and a row is timed only where both sides' cells waited for a
# CPU alike (mean wall_s / mean cpu_s within the calibration tolerance of each other) and, for
# one-thread cells, hardly at all (a loaded CPU also runs slower per CPU second).
CONTENDED = "contended"
# Metric direction from the name's ending: +1 higher is better, -1 lower is better. Other final
# numbers (counts such as `kept`, `stopped_at`, chosen settings) are not quality metrics.
HIGHER_IS_BETTER = ("acc", "accuracy", "f1", "auc", "precision", "recall")
LOWER_IS_BETTER = ("loss", "regret", "error", "mse", "rmse", "mae")

Problem = tuple[str, str]  # (kind: missing | failed | <metric> | time | memory, message)


class SuiteMismatch(ReportError):
    """The two sides ran different suites: their cells do not describe the same experiment."""


def metric_direction(name: str) -> int:
    """+1 when a higher value of final metric `name` is better, -1 when lower is, 0 when it is
    not a quality metric (then it is never gated)."""
    lowered = name.lower()
    if lowered.endswith(HIGHER_IS_BETTER):
        return 1
    if lowered.endswith(LOWER_IS_BETTER):
        return -1
    return 0


@dataclass
class CompareResult:
    """The comparison table (one row per task × strategy), its per-metric details, the
    regressions found, notes, and the two sides' descriptions for the header."""

    table: pd.DataFrame
    regressions: list[str]
    notes: list[str] = field(default_factory=list)
    time_ratio: float = 1.5
    memory_ratio: float = 1.5
    calibration_tolerance: float = CALIBRATION_TOLERANCE
    sides: dict[str, dict[str, Any]] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "task/strategy" ->

    @property
    def ok(self) -> bool:
        return not self.regressions


# -- the sides: suites, manifests, environments -------------------------------------------------


def _manifests(runs: pd.DataFrame) -> list[dict[str, Any]]:
    return [m if isinstance(m, dict) else {} for m in runs.get("manifest", [])]


def _environment(runs: pd.DataFrame) -> set[tuple[Any, ...]]:
    """(torch version, device, threads) of each run: what a time figure depends on beyond the
    code and the machine's speed (which the calibration divides out)."""
    return {
        ((m.get("packages") or {}).get("torch"), m.get("device"), m.get("threads"))
        for m in _manifests(runs)
    }


def _device_kinds(runs: pd.DataFrame) -> set[str]:
    return {str(m.get("device") or "?").partition(":")[0] for m in _manifests(runs)}


def _calibration_versions(runs: pd.DataFrame) -> set[int]:
    # Records from before the calibration was versioned used the ~25 ms workload: version 1.
    return {int(m.get("calibration_version") or 1) for m in _manifests(runs)}


def _calibration_spread(*sides: pd.DataFrame) -> float:
    """Largest calibration_s over the smallest, over every record of the sides (NaN: a side
    has none)."""
    values = [_numeric(side["calibration_s"]).dropna() for side in sides]
    values = [v[v > 0] for v in values]
    if any(v.empty for v in values):
        return math.nan
    both = pd.concat(values)
    return float(both.max() / both.min())


def _joined(values: list[Any]) -> str:
    unique = list(dict.fromkeys("–" if v is None else str(v) for v in values))
    return " | ".join(unique) if unique else "–"


# What the header states about each side, and the keys whose difference it points out.
HEADER_FIELDS = (
    ("hobench", lambda m: m.get("hobench")),
    ("git commit", lambda m: (m.get("git_commit") or "")[:12] or None),
    ("python", lambda m: m.get("python")),
    ("torch", lambda m: (m.get("packages") or {}).get("torch")),
    ("optuna", lambda m: (m.get("packages") or {}).get("optuna")),
    ("numpy", lambda m: (m.get("packages") or {}).get("numpy")),
    ("device", lambda m: m.get("device")),
    ("device name", lambda m: m.get("device_name")),
    ("threads", lambda m: m.get("threads")),
    ("calibration", lambda m: m.get("calibration_version") or 1),
)


def _describe_side(path: str | Path, runs: pd.DataFrame) -> dict[str, Any]:
    manifests = _manifests(runs)
    side: dict[str, Any] = {
        "path": str(path),
        "suite": _joined(list(runs["suite"])),
        "cells": len(runs),
        "ok": int((runs["status"] == "ok").sum()),
    }
    for label, get in HEADER_FIELDS:
        side[label] = _joined([get(m) for m in manifests])
    calibrations = [m.get("calibration_s") for m in manifests if m.get("calibration_s")]
    side["calibration_s"] = float(pd.Series(calibrations).median()) if calibrations else None
    return side


def _differences(base: dict[str, Any], cur: dict[str, Any]) -> list[str]:
    return [
        f"{label}: {base[label]} -> {cur[label]}"
        for label, _ in HEADER_FIELDS
        if base[label] != cur[label]
    ]


# -- one row ------------------------------------------------------------------------------------


def _numeric(column: pd.Series) -> pd.Series:
    return pd.to_numeric(column, errors="coerce").astype(float)


def _mean(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean()) if len(values) else math.nan


def _median(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.median()) if len(values) else math.nan


def _ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator) or denominator <= 0:
        return math.nan
    return numerator / denominator


def _metric_names(base: pd.DataFrame, cur: pd.DataFrame) -> list[str]:
    """Final metrics with a direction and a value on both sides' ok cells, in record order."""
    names = []
    for column in dict.fromkeys([*base.columns, *cur.columns]):
        name = column.removeprefix("final.")
        if column == name or not metric_direction(name):
            continue
        present = column in base and column in cur
        if present and _numeric(base[column]).notna().any() and _numeric(cur[column]).notna().any():
            names.append(name)
    return names


def _deterministic(cells: pd.DataFrame) -> bool:
    """Every cell's budget is in cost or steps only: no wall-clock limit decides where it stops."""
    seconds = cells["budget.seconds"]
    limited = cells[["budget.cost", "budget.steps"]].notna().any(axis=1)
    return bool(len(cells)) and bool(seconds.isna().all()) and bool(limited.all())


def _tolerance(metric: str, base_mean: float, n: int, acc_tolerance: float | None) -> float:
    bounded = metric_direction(metric) > 0  # accuracies and F1 live in [0, 1]
    if bounded and acc_tolerance is not None:
        return acc_tolerance
    if n >= 2:
        return 0.0  # the bootstrap CI is the slack
    return SINGLE_SEED_TOLERANCE * (1.0 if bounded else abs(base_mean))


def _exact(
    name: str, metric: str, b: pd.DataFrame, c: pd.DataFrame, column: str = "", sign: int = 0
) -> tuple[dict, Problem | None]:
    """Seed-by-seed: the same cell must give the same value; worse on any seed is a regression.
    `column` and `sign` default to the final metric's."""
    column, sign = column or f"final.{metric}", sign or metric_direction(metric)
    base = dict(zip(b["cell"], _numeric(b[column]), strict=True))
    cur = dict(zip(c["cell"], _numeric(c[column]), strict=True))
    worse, better = [], []
    for cell in base.keys() & cur.keys():
        x, y = base[cell], cur[cell]
        if (math.isnan(x) and math.isnan(y)) or x == y:
            continue
        if math.isnan(y) or (not math.isnan(x) and sign * (y - x) < 0):
            worse.append(cell)
        else:
            better.append(cell)
    verdict = "worse" if worse else ("better" if better else "same")
    detail = {"metric": metric, "mode": "exact", "verdict": verdict, "worse": sorted(worse)}
    problem = None
    if worse:
        b_mean, c_mean = _mean(b[column]), _mean(c[column])
        problem = (
            metric,
            f"{name}: {metric} worse on {len(worse)} of {len(base.keys() & cur.keys())} seed(s) "
            f"under a deterministic budget (exact; mean {b_mean:.6g} -> {c_mean:.6g})",
        )
    return detail, problem


def _interval(
    name: str, metric: str, b: pd.DataFrame, c: pd.DataFrame, acc_tolerance: float | None
) -> tuple[dict, Problem | None]:
    """The current mean against the baseline's 95 % bootstrap CI, on the worse side only."""
    column, sign = f"final.{metric}", metric_direction(metric)
    mean, low, high = bootstrap_ci(_numeric(b[column]))
    current = _mean(c[column])
    n = min(int(_numeric(b[column]).notna().sum()), int(_numeric(c[column]).notna().sum()))
    tolerance = _tolerance(metric, mean, n, acc_tolerance)
    bound = low - tolerance if sign > 0 else high + tolerance
    worse = current < bound if sign > 0 else current > bound  # False when either is NaN
    # A mean of equal values can differ from them in the last bit: that is not a regression.
    worse = worse and not math.isclose(current, bound, rel_tol=1e-9, abs_tol=1e-12)
    detail = {"metric": metric, "mode": "interval", "verdict": "worse" if worse else "within"}
    detail.update(base=mean, base_low=low, base_high=high, tolerance=tolerance)
    problem = None
    if worse:
        side = "low" if sign > 0 else "high"
        sign_text = "-" if sign > 0 else "+"
        problem = (
            metric,
            f"{name}: {metric} {current:.6g} {'<' if sign > 0 else '>'} baseline CI {side} "
            f"{low if sign > 0 else high:.6g} {sign_text} tolerance {tolerance:.3g}",
        )
    return detail, problem


def _config(cells: pd.DataFrame) -> set[str]:
    """What a row's cells were configured with: budgets and the parameters set to other than
    their defaults. Results record every parameter, so without that a parameter added since a
    run (its default keeping the old behaviour) would make the run's cells another config."""
    keys = ["budget.cost", "budget.seconds", "budget.steps"]
    configs = set()
    for _, r in cells.iterrows():
        config = {k: (None if _isnan(r[k]) else r[k]) for k in keys}
        config["task_params"] = _not_default(TASKS, r["task_kind"], r["task_params"])
        strategy_params = {k: v for k, v in r["strategy_params"].items() if k != "compile"}
        config["strategy_params"] = _not_default(STRATEGIES, r["strategy_kind"], strategy_params)
        # The path the cell ran (a strategy's `compile`, else its suite's): compiled rounds
        # otherwise than eager.
        config["compiled"] = bool(r.get("compiled", False))
        configs.add(json.dumps(config, sort_keys=True))
    return configs


def _not_default(registry, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` less those equal to their current default (all of them where `kind` is not
    installed here, or its plugin does not load)."""
    try:
        defaults = registry.parameters(kind)
    except Exception:  # unknown kind, broken plugin: compare the recorded values as they are
        return params
    missing = object()
    return {k: v for k, v in params.items() if defaults.get(k, missing) != v}


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


@dataclass
class _Gates:
    """Which resource gates apply, decided once for the two sides."""

    time: bool
    memory_device: bool
    calibration_tolerance: float
    exact_env: bool
    time_ratio: float
    memory_ratio: float
    acc_tolerance: float | None


def _compare_row(
    name: str, b: pd.DataFrame, c: pd.DataFrame, gates: _Gates
) -> tuple[dict[str, Any], list[dict[str, Any]], list[Problem]]:
    """One table row, its per-metric details and the regressions it shows (ok cells only)."""
    b, c = b[b["status"] == "ok"], c[c["status"] == "ok"]
    row: dict[str, Any] = {"n_base": len(b), "n_current": len(c)}
    problems: list[Problem] = []
    details: list[dict[str, Any]] = []
    same_config = _config(b) == _config(c)
    if b.empty or c.empty:
        mode = "–"
    elif not same_config:
        mode = "config differs"
    else:
        exact = gates.exact_env and _deterministic(b) and _deterministic(c)
        mode = "exact" if exact else "interval"
        for metric in _metric_names(b, c):
            if exact:
                detail, problem = _exact(name, metric, b, c)
            else:
                detail, problem = _interval(name, metric, b, c, gates.acc_tolerance)
            detail.update(current=_mean(c[f"final.{metric}"]))
            detail.setdefault("base", _mean(b[f"final.{metric}"]))
            details.append(detail)
            if problem:
                problems.append(problem)
        if exact and "resources.cost" in b and "resources.cost" in c:
            # The budget spent is as deterministic as the metrics: more for the same is worse.
            detail, problem = _exact(name, "cost", b, c, "resources.cost", sign=-1)
            problems += [problem] if problem else []
    row["mode"] = mode
    row["metrics_checked"] = len(details)
    row["metrics_worse"] = ", ".join(d["metric"] for d in details if d["verdict"] == "worse")
    row["metrics_changed"] = ", ".join(d["metric"] for d in details if d["verdict"] == "better")
    primary = next((d for d in details if d["metric"] == "regret"), None) or next(
        (d for d in details if d["metric"] == "test_acc"), details[0] if details else None
    )
    row["primary"] = primary["metric"] if primary else "–"
    row["primary_base"] = primary["base"] if primary else math.nan
    row["primary_current"] = primary["current"] if primary else math.nan
    # Backward-compatible accuracy columns, for readers of the table.
    row["acc_base"] = _mean(b["final.test_acc"]) if "final.test_acc" in b else math.nan
    row["acc_current"] = _mean(c["final.test_acc"]) if "final.test_acc" in c else math.nan

    row["time_ratio"], row["time_basis"] = _time(
        b, c, gates.time and same_config, gates.calibration_tolerance
    )
    if row["time_ratio"] > gates.time_ratio:  # False for NaN: not compared
        problems.append(
            ("time", f"{name}: time ×{row['time_ratio']:.2f} (calibrated) > ×{gates.time_ratio:g}")
        )

    added_b = _numeric(b.get("resources.added_rss_mb", pd.Series(math.nan, index=b.index)))
    added_c = _numeric(c.get("resources.added_rss_mb", pd.Series(math.nan, index=c.index)))
    has_added = len(b) and len(c) and added_b.notna().all() and added_c.notna().all()
    row["added_mb_base"] = _mean(added_b) if has_added else math.nan
    row["added_mb_current"] = _mean(added_c) if has_added else math.nan
    memory = _ratio(row["added_mb_current"], row["added_mb_base"])
    row["memory_ratio"] = memory
    gated_memory = bool(has_added) and gates.memory_device and same_config
    row["memory_basis"] = "added" if gated_memory else "not comparable"
    grown = row["added_mb_current"] - row["added_mb_base"]
    if gated_memory and memory > gates.memory_ratio and grown > MEMORY_FLOOR_MB:
        problems.append(
            (
                "memory",
                f"{name}: memory added by the cell ×{memory:.2f} "
                f"({row['added_mb_base']:.0f} -> {row['added_mb_current']:.0f} MB) "
                f"> ×{gates.memory_ratio:g}",
            )
        )
    row["overrun_base"] = _mean(b["resources.overrun_s"])  # informational, never a regression
    row["overrun_current"] = _mean(c["resources.overrun_s"])
    return row, details, problems


def _time(b: pd.DataFrame, c: pd.DataFrame, gated: bool, tolerance: float) -> tuple[float, str]:
    """The calibrated time ratio and its basis; a ratio that cannot be trusted is never shown
    (NaN, "not compared", "too short", "contended"), so no one reads a number the gate itself
    ignores."""
    base_cal, cur_cal = _median(b["calibration_s"]), _median(c["calibration_s"])
    if b.empty or c.empty:
        return math.nan, "–"
    if not (gated and base_cal > 0 and cur_cal > 0):  # False for NaN
        return math.nan, NOT_COMPARED
    if max(_mean(b["resources.wall_s"]), _mean(c["resources.wall_s"])) < TIME_FLOOR_S:
        return math.nan, TOO_SHORT
    waits_b, waits_c = _waits(b), _waits(c)
    apart = _ratio(waits_c, waits_b)
    if apart > 0 and max(apart, 1 / apart) > tolerance:  # False for NaN: no cpu_s, or GPU
        return math.nan, CONTENDED
    if _starved(b, waits_b, tolerance) or _starved(c, waits_c, tolerance):
        return math.nan, CONTENDED
    time = _ratio(_mean(c["resources.wall_s"]) / cur_cal, _mean(b["resources.wall_s"]) / base_cal)
    return time, "–" if math.isnan(time) else "calibrated"


def _waits(frame: pd.DataFrame) -> float:
    """Mean wall seconds per CPU second of a side's CPU cells: about 1 for a one-thread cell
    that had a core to itself, more the longer it waited for one. NaN where a record lacks
    cpu_s, and for GPU cells, whose wall is the device's as much as the CPU's."""
    cpu = _numeric(frame.get("resources.cpu_s", pd.Series(math.nan, index=frame.index)))
    if cpu.isna().any() or not (cpu > 0).all() or _device_kinds(frame) != {"cpu"}:
        return math.nan
    return _mean(frame["resources.wall_s"]) / _mean(cpu)


def _starved(frame: pd.DataFrame, waits: float, tolerance: float) -> bool:
    """Whether a side's one-thread cells spent more than `tolerance` wall seconds per CPU
    second (`waits`, from `_waits`): both sides loaded alike pass the relative test, yet a
    loaded CPU also runs slower per CPU second (caches shared with the load: x1.2-1.5 under
    make test at load 8-10)."""
    threads = {m.get("threads") for m in _manifests(frame)}
    return threads == {1} and waits > tolerance  # False for NaN


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
    allow_different_suites: bool = False,
    calibration_tolerance: float = CALIBRATION_TOLERANCE,
) -> CompareResult:
    """Compare a current results directory against a baseline one.

    Per task × strategy (ok cells only), for every final metric with a direction
    (`metric_direction`: accuracies and F1 higher is better; losses and regret lower):
    - exact mode (deterministic budgets on both sides, same torch build, device and threads): a
      cell whose value is worse than the same cell's in the baseline is a regression;
    - interval mode otherwise: the current mean beyond the baseline's 95 % bootstrap CI on the
      worse side, by more than a tolerance (0 with >= 2 seeds; with one seed
      `SINGLE_SEED_TOLERANCE`, absolute for accuracy-like metrics, relative for the others;
      `acc_tolerance` overrides it for accuracy-like metrics);
    - time regresses when (current mean wall_s / calibration_s) over the baseline's exceeds
      `time_ratio`, gated only when the environments and calibration versions match and all
      calibrations lie within a factor `calibration_tolerance`; otherwise "not compared"; and
      not for a row whose cells waited for a CPU longer on one side (mean wall_s / cpu_s more
      than `calibration_tolerance` apart) or whose one-thread cells spent more than
      `calibration_tolerance` wall seconds per CPU second on either side: "contended";
    - memory regresses when the mean `resources.added_rss_mb` grows by more than `memory_ratio`
      and by more than `MEMORY_FLOOR_MB`, gated when both sides have it on the same device kind.
    A row whose budgets or parameters differ between the sides is shown as "config differs" and
    not gated. A cell present in the baseline but missing in current, or ok there but failed
    here, is a regression. Pairs only in current are listed as "new".
    Raises `SuiteMismatch` when the suites differ and `allow_different_suites` is False.
    """
    base, cur = load_runs(baseline_dir), load_runs(current_dir)
    sides = {
        "baseline": _describe_side(baseline_dir, base),
        "current": _describe_side(current_dir, cur),
    }
    base_suites, cur_suites = set(base["suite"].dropna()), set(cur["suite"].dropna())
    notes = []
    if base_suites != cur_suites:
        if not allow_different_suites:
            raise SuiteMismatch(
                f"baseline {baseline_dir} is suite {sides['baseline']['suite']}, current "
                f"{current_dir} is suite {sides['current']['suite']}: not the same experiment "
                "(--allow-different-suites compares the cells they share anyway)"
            )
        notes.append(
            f"different suites compared on request: {sides['baseline']['suite']} -> "
            f"{sides['current']['suite']}"
        )
    base_env, cur_env = _environment(base), _environment(cur)
    same_env = base_env == cur_env and len(base_env) == 1
    same_calibration = _calibration_versions(base) == _calibration_versions(cur)
    # Bit-identical reruns need the same processor model too: another CPU's kernels (AVX2 or
    # AVX-512, another BLAS path) round differently in the last bit.
    models = sides["baseline"]["device name"], sides["current"]["device name"]
    same_model = models[0] == models[1] and " | " not in models[0]
    spread = _calibration_spread(base, cur)
    steady = spread <= calibration_tolerance  # False for NaN
    gates = _Gates(
        time=same_env and same_calibration and steady,
        memory_device=_device_kinds(base) == _device_kinds(cur),
        calibration_tolerance=calibration_tolerance,
        exact_env=same_env and same_model,
        time_ratio=time_ratio,
        memory_ratio=memory_ratio,
        acc_tolerance=acc_tolerance,
    )
    cell_problems = _cell_problems(base, cur)
    keys = list(dict.fromkeys(zip(base["task"], base["strategy"], strict=True)))
    keys += [
        k for k in dict.fromkeys(zip(cur["task"], cur["strategy"], strict=True)) if k not in keys
    ]
    rows, regressions, metrics = [], [], {}
    for task, strategy in keys:
        name = f"{task}/{strategy}"
        b = base[(base["task"] == task) & (base["strategy"] == strategy)]
        c = cur[(cur["task"] == task) & (cur["strategy"] == strategy)]
        row, details, problems = _compare_row(name, b, c, gates)
        problems = cell_problems.get((task, strategy), []) + problems
        kinds = list(dict.fromkeys(kind for kind, _ in problems))
        status = "new" if b.empty else ("REGRESSION: " + ", ".join(kinds) if kinds else "ok")
        if status == "ok" and row["mode"] == "config differs":
            status = "not comparable: config differs"
        rows.append({"task": task, "strategy": strategy, **row, "status": status})
        regressions += [message for _, message in problems]
        metrics[name] = details
    table = pd.DataFrame(rows)
    if not gates.time:
        why = _why_not_timed(
            base_env, cur_env, same_env, same_calibration, spread, calibration_tolerance
        )
        notes.append(f"time {NOT_COMPARED}: {why}")
    if len(table) and (table["time_basis"] == CONTENDED).any():
        notes.append(
            f"time not compared where the cells waited for a CPU ('{CONTENDED}': wall over CPU "
            f"seconds more than ×{calibration_tolerance:g} the other side's, or than "
            f"×{calibration_tolerance:g} for one-thread cells): the machines were loaded"
        )
    if len(table) and (table["time_basis"] == TOO_SHORT).any():
        notes.append(
            f"time not compared where a row's cells take under {TIME_FLOOR_S:g} s on both sides "
            f"('{TOO_SHORT}'): their wall is scheduling noise"
        )
    if not gates.exact_env:
        why = (
            "the environments differ"
            if not same_env
            else f"the processors differ ({models[0]} -> {models[1]}) and round differently"
        )
        notes.append(f"metrics compared by interval, not exactly: {why}")
    if len(table) and (table["memory_basis"] == "not comparable").any():
        notes.append(
            "memory not gated where a side lacks resources.added_rss_mb (older records) "
            "or the device kinds differ"
        )
    if len(table) and (table["mode"] == "config differs").any():
        notes.append("rows marked 'config differs' ran with other budgets or parameters: not gated")
    changed = [f"{r['task']}/{r['strategy']}" for r in rows if r["metrics_changed"]]
    if changed:
        notes.append(
            "better than an exact baseline (behaviour changed; regenerate the baseline): "
            + ", ".join(changed)
        )
    return CompareResult(
        table,
        regressions,
        notes,
        time_ratio,
        memory_ratio,
        calibration_tolerance,
        sides,
        _differences(sides["baseline"], sides["current"]),
        metrics,
    )


def _why_not_timed(
    base_env: set, cur_env: set, same_env: bool, same_calibration: bool, spread: float, limit: float
) -> str:
    """Why time is not compared, in words (one clause)."""
    if not same_env:
        base, cur = _describe(base_env), _describe(cur_env)
        return f"the baseline ran with {base}, the current run with {cur}"
    if not same_calibration:
        return "the calibration workloads differ (a newer hobench measures a longer one)"
    if math.isnan(spread):
        return "calibration_s missing on a side (older records)"
    return (
        f"the calibrations of the two runs differ by ×{spread:.2f}, more than ×{limit:g}: the "
        "machines, or the load on them, differ (accuracy and cost are still gated)"
    )


def _describe(environments: set[tuple[Any, ...]]) -> str:
    return "; ".join(
        f"torch {torch}, {device}, {threads} thread(s)"
        for torch, device, threads in sorted(environments, key=str)
    )


# -- output -------------------------------------------------------------------------------------

COLUMNS = (
    ("task", "task"),
    ("strategy", "strategy"),
    ("seeds", "seeds b/c"),
    ("mode", "metrics mode"),
    ("primary", "metric"),
    ("primary_base", "base"),
    ("primary_current", "now"),
    ("checked", "checked/worse"),
    ("time_ratio", "time ×"),
    ("time_basis", "time basis"),
    ("overrun", "overrun s b/c"),
    ("memory", "added MB b/c"),
    ("status", "status"),
)


def _number(value: float, digits: str = ".4g") -> str:
    return "–" if value is None or math.isnan(value) else format(value, digits)


def _cell(key: str, row: pd.Series) -> str:
    if key == "seeds":
        return f"{row['n_base']}/{row['n_current']}"
    if key == "overrun":
        return f"{_number(row['overrun_base'], '.1f')}/{_number(row['overrun_current'], '.1f')}"
    if key == "memory":
        return f"{_number(row['added_mb_base'], '.0f')}/{_number(row['added_mb_current'], '.0f')}"
    if key == "checked":
        worse = row["metrics_worse"]
        return f"{row['metrics_checked']}/{len(worse.split(', ')) if worse else 0}"
    value = row[key]
    if isinstance(value, str):
        return value
    return _number(value, ".2f" if key == "time_ratio" else ".4g")


def format_header(result: CompareResult) -> list[str]:
    """Who is compared with whom: suite, versions and machine of each side, and what differs."""
    lines = []
    for label, side in result.sides.items():
        lines.append(
            f"{label + ':':<10}{side['path']}  suite {side['suite']}, {side['ok']}/{side['cells']} "
            f"ok; hobench {side['hobench']} @ {side['git commit']}; python {side['python']}, "
            f"torch {side['torch']}; {side['device']} ({side['device name']}), "
            f"{side['threads']} thread(s)"
        )
    if result.differences:
        lines.append("differs:  " + "; ".join(result.differences))
    return lines


def format_compare(result: CompareResult) -> str:
    """The header, the comparison as a fixed-width table, then the regressions and notes."""
    header = [label for _, label in COLUMNS]
    body = [[_cell(key, row) for key, _ in COLUMNS] for _, row in result.table.iterrows()]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    text_columns = {0, 1, 3, 4, 9, len(header) - 1}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in text_columns else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = format_header(result) if result.sides else []
    lines += ["", line(header), line(["-" * w for w in widths]), *(line(cells) for cells in body)]
    lines.append("")
    lines.append(
        "Checks: every final metric (exact under deterministic budgets on the same build, else "
        f"against the baseline CI); time ratio > ×{result.time_ratio:g} (wall_s / calibration_s, "
        "same build, device and threads, only when all calibrations agree within "
        f"×{result.calibration_tolerance:g}, cells of {TIME_FLOOR_S:g} s or more); "
        f"memory added by a cell > ×{result.memory_ratio:g}"
        f" and > {MEMORY_FLOOR_MB:g} MB; missing or newly failed cells. Overrun (mean seconds "
        "past a seconds budget, baseline/current) is shown, not checked."
    )
    if result.regressions:
        lines.append(f"{len(result.regressions)} regression(s):")
        lines += [f"  - {text}" for text in result.regressions]
    else:
        lines.append("No regressions.")
    lines += [f"Note: {note}" for note in result.notes]
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """JSON-safe: NaN becomes null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def compare_json(result: CompareResult) -> str:
    """The comparison as one JSON document (for CI bots and dashboards)."""
    rows = []
    for record in result.table.to_dict(orient="records"):
        record["metrics"] = result.metrics.get(f"{record['task']}/{record['strategy']}", [])
        rows.append(record)
    document = {
        "ok": result.ok,
        "baseline": result.sides.get("baseline"),
        "current": result.sides.get("current"),
        "differences": result.differences,
        "thresholds": {
            "time_ratio": result.time_ratio,
            "calibration_tolerance": result.calibration_tolerance,
            "memory_ratio": result.memory_ratio,
            "memory_floor_mb": MEMORY_FLOOR_MB,
            "time_floor_s": TIME_FLOOR_S,
        },
        "rows": rows,
        "regressions": result.regressions,
        "notes": result.notes,
    }
    return json.dumps(_plain(document), indent=2)
