"""Benchmark history: one summary per tracked run, keyed by git commit and date, and step changes.

`hobench track RESULTS --history FILE` appends one JSON line per run to FILE: the suite's mean,
seed spread (standard deviation) and count of every final metric per task × strategy, the time
per cell in calibration units and the memory a cell adds. A pytest-benchmark JSON file (what
`make bench-engine` saves under .benchmarks/) is tracked the same way: the median seconds of
each engine benchmark, its spread and rounds. `hobench history FILE` prints each metric over
the commits, plots them, and flags the step changes beyond noise.

Why a JSON-lines file and not an existing tool's store: asv needs its own benchmark suite layout
and runs the benchmarks itself (in its own environments), so it cannot take results the harness
already measured; github-action-benchmark is a GitHub Action that writes a data.js for a
gh-pages site and has no local reader; pytest-benchmark's storage holds only its own runs. What
is left to do by hand is small: append a line (the format of `runs.jsonl`, kurobako-style), read
it with pandas, plot with matplotlib.

A step change between two consecutive entries of a metric is a change of the mean by more than
`MIN_RELATIVE_STEP` of the earlier value that is also beyond noise:
- where both entries are exact (a final metric of cells under deterministic budgets, cost or
  steps only) and ran in the same environment (torch build, device, threads), there is no
  noise: such reruns are bit-identical, so the relative floor alone decides;
- otherwise the difference must exceed `STEP_SIGMAS` standard errors of the difference,
  sqrt(s1²/n1 + s2²/n2), with s the seed (or benchmark-round) standard deviation: four standard
  errors is a two-sided p of about 6e-5 for normal noise, so a history of a few hundred metrics
  rarely cries wolf. With two seeds this is a weak test; an entry without spread (one seed)
  counts as exact.
"""

from __future__ import annotations

import datetime
import json
import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from hobench.report.compare import metric_direction
from hobench.report.errors import ReportError
from hobench.report.load import load_runs

HISTORY_SCHEMA = 1
STEP_SIGMAS = 4.0
MIN_RELATIVE_STEP = 0.02


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stats(values: Iterable[float]) -> dict[str, float] | None:
    clean = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not clean:
        return None
    std = statistics.stdev(clean) if len(clean) > 1 else 0.0
    return {"mean": statistics.fmean(clean), "std": std, "n": len(clean)}


def _most_common(values: Iterable[Any]) -> Any:
    present = [v for v in values if v]
    return max(set(present), key=present.count) if present else None


def summarize_results(results: str | Path) -> dict[str, Any]:
    """One history entry from a results directory (or runs.jsonl): per task × strategy, the
    mean, seed spread and count of every final metric with a direction, of wall seconds in
    calibration units (`time_cal`) and of `added_rss_mb` where recorded."""
    runs = load_runs(results)
    ok = runs[runs["status"] == "ok"]
    no_clock = ok["budget.seconds"].isna() & ok[["budget.cost", "budget.steps"]].notna().any(axis=1)
    suite = _most_common(runs["suite"]) or "?"
    metrics: dict[str, dict[str, float]] = {}
    for (task, strategy), cells in ok.groupby(["task", "strategy"], sort=False):
        prefix = f"{suite}:{task}/{strategy}"
        exact = bool(no_clock[cells.index].all())  # deterministic budgets: reruns are exact
        for column in cells.columns:
            name = column.removeprefix("final.")
            if column != name and metric_direction(name):
                stats = _stats(pd.to_numeric(cells[column], errors="coerce"))
                if stats:
                    metrics[f"{prefix}/{name}"] = {**stats, "exact": exact}
        calibration = pd.to_numeric(cells["calibration_s"], errors="coerce")
        if calibration.gt(0).all():
            stats = _stats(cells["resources.wall_s"] / calibration)
            if stats:
                metrics[f"{prefix}/time_cal"] = stats
        if "resources.added_rss_mb" in cells:
            stats = _stats(pd.to_numeric(cells["resources.added_rss_mb"], errors="coerce"))
            if stats:
                metrics[f"{prefix}/added_rss_mb"] = stats
    manifests = [m for m in runs["manifest"] if isinstance(m, dict)]
    starts = [m.get("started_at") for m in manifests if m.get("started_at")]
    return {
        "source": "suite",
        "name": suite,
        "commit": _most_common(m.get("git_commit") for m in manifests),
        "date": max(starts) if starts else _now(),
        "environment": _environment(manifests),
        "metrics": metrics,
    }


def _environment(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "hobench": _most_common(m.get("hobench") for m in manifests),
        "torch": _most_common((m.get("packages") or {}).get("torch") for m in manifests),
        "device": _most_common(m.get("device") for m in manifests),
        "threads": _most_common(m.get("threads") for m in manifests),
        "hostname": _most_common(m.get("hostname") for m in manifests),
    }


def summarize_benchmarks(path: str | Path) -> dict[str, Any]:
    """One history entry from a pytest-benchmark JSON file: each benchmark's median seconds,
    with the standard deviation and count of its rounds as the noise."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    commit = document.get("commit_info") or {}
    machine = document.get("machine_info") or {}
    metrics = {}
    for bench in document["benchmarks"]:
        stats = bench.get("stats") or {}
        if stats.get("median") is None:
            continue
        key = f"engine:{bench.get('group') or 'benchmarks'}/{bench['name']}/median_s"
        metrics[key] = {
            "mean": float(stats["median"]),
            "std": float(stats.get("stddev") or 0.0),
            "n": int(stats.get("rounds") or 1),
        }
    commit_id = commit.get("id")
    return {
        "source": "pytest-benchmark",
        "name": Path(path).stem,
        "commit": None if commit_id in (None, "unversioned") else commit_id,
        "date": commit.get("time") or document.get("datetime") or _now(),
        "environment": {
            "python": machine.get("python_version"),
            "cpu": (machine.get("cpu") or {}).get("brand_raw"),
            "hostname": machine.get("node"),
        },
        "metrics": metrics,
    }


def _is_benchmark_file(path: Path) -> bool:
    if not path.is_file() or path.name == "runs.jsonl":
        return False
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and "benchmarks" in document and "machine_info" in document


def track(
    source: str | Path,
    history: str | Path,
    commit: str | None = None,
    date: str | None = None,
) -> dict[str, Any]:
    """Append the summary of `source` (a results directory, runs.jsonl, or a pytest-benchmark
    JSON file) to the `history` JSON-lines file; returns the entry. `commit` and `date` override
    what the results say (their manifest's git commit and latest start)."""
    source = Path(source)
    entry = (
        summarize_benchmarks(source) if _is_benchmark_file(source) else summarize_results(source)
    )
    entry["commit"] = commit or entry["commit"] or "unknown"
    entry["date"] = date or entry["date"]
    entry = {"schema": HISTORY_SCHEMA, **entry, "tracked_at": _now()}
    if not entry["metrics"]:
        raise ReportError(f"{source}: nothing to track (no ok cell with a metric)")
    history = Path(history)
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=False) + "\n")
    return entry


def read_history(path: str | Path) -> pd.DataFrame:
    """Long format, one row per (entry, metric): order (line), commit, date, source, name,
    metric, mean, std, n; sorted by date, then by line."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no history file (hobench track RESULTS --history {path})")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if entry.get("schema") != HISTORY_SCHEMA:
                    raise ValueError(f"schema {entry.get('schema')!r}")
                environment = entry.get("environment") or {}
                env = json.dumps([environment.get(k) for k in ("torch", "device", "threads")])
                for metric, stats in entry["metrics"].items():
                    rows.append(
                        {
                            "order": lineno,
                            "env": env,
                            "exact": bool(stats.get("exact")),
                            "commit": str(entry["commit"]),
                            "date": str(entry["date"]),
                            "source": entry.get("source"),
                            "name": entry.get("name"),
                            "metric": metric,
                            "mean": float(stats["mean"]),
                            "std": float(stats.get("std") or 0.0),
                            "n": int(stats.get("n") or 1),
                        }
                    )
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ReportError(f"{path}:{lineno}: not a history entry ({exc})") from None
    frame = pd.DataFrame(
        rows,
        columns=[
            *("order", "env", "exact", "commit", "date", "source", "name"),
            *("metric", "mean", "std", "n"),
        ],
    )
    frame["when"] = pd.to_datetime(frame["date"], utc=True, errors="coerce", format="ISO8601")
    return frame.sort_values(["when", "order"], kind="stable").reset_index(drop=True)


def _direction(metric: str) -> int:
    leaf = metric.rsplit("/", 1)[-1]
    if leaf in ("time_cal", "added_rss_mb", "median_s"):
        return -1
    return metric_direction(leaf)


def is_step(previous: pd.Series, current: pd.Series) -> bool:
    """Whether the change from one entry's (mean, std, n) to the next is beyond noise (see the
    module docstring for the rule and its thresholds)."""
    difference = abs(current["mean"] - previous["mean"])
    if difference <= MIN_RELATIVE_STEP * abs(previous["mean"]):
        return False
    if previous["exact"] and current["exact"] and previous["env"] == current["env"]:
        return True  # bit-identical reruns: any change of this size is the code's
    error = math.sqrt(previous["std"] ** 2 / previous["n"] + current["std"] ** 2 / current["n"])
    return error == 0 or difference > STEP_SIGMAS * error


def find_steps(frame: pd.DataFrame) -> pd.DataFrame:
    """The history with `step` (a change beyond noise from the metric's previous entry) and
    `change` (relative to it) columns, and `worse` where the step goes the bad way."""
    frame = frame.copy()
    frame["step"], frame["change"], frame["worse"] = False, math.nan, False
    for metric, series in frame.groupby("metric", sort=False):
        index = list(series.index)
        for before, after in zip(index, index[1:], strict=False):
            previous, current = frame.loc[before], frame.loc[after]
            if previous["mean"] != 0:
                frame.loc[after, "change"] = current["mean"] / previous["mean"] - 1
            if is_step(previous, current):
                frame.loc[after, "step"] = True
                frame.loc[after, "worse"] = (
                    _direction(str(metric)) * (current["mean"] - previous["mean"]) < 0
                )
    return frame


def format_history(frame: pd.DataFrame, last: int = 6) -> str:
    """Per metric, its last `last` values over commits, then the step changes found."""
    if frame.empty:
        return "(empty history)"
    commits = list(dict.fromkeys(frame["commit"]))
    lines = [f"{len(commits)} tracked commit(s): {', '.join(c[:10] for c in commits[-last:])}"]
    steps = []
    width = min(max(len(m) for m in frame["metric"]), 70)
    for metric, series in frame.groupby("metric", sort=False):
        tail = series.tail(last)
        values = "  ".join(
            f"{row['commit'][:7]}={row['mean']:.4g}" + ("*" if row["step"] else "")
            for _, row in tail.iterrows()
        )
        lines.append(f"{str(metric)[:width]:<{width}}  {values}")
        for _, row in series[series["step"]].iterrows():
            change = "" if math.isnan(row["change"]) else f" ({row['change']:+.1%})"
            way = "worse" if row["worse"] else "better"
            steps.append(
                f"  - {metric}: step at {row['commit'][:10]} ({row['date']}){change}, {way}"
            )
    lines.append("")
    if steps:
        lines.append(
            f"{len(steps)} step change(s) beyond noise (* above; > {MIN_RELATIVE_STEP:.0%}, and "
            f"> {STEP_SIGMAS:g} standard errors of the seed spread unless exact):"
        )
        lines += steps
    else:
        lines.append("No step changes beyond noise.")
    return "\n".join(lines)


def plot_history(frame: pd.DataFrame, out: str | Path, max_panels: int = 48) -> Path:
    """One small panel per metric (mean ± seed spread over commits), steps marked red; the
    metrics with steps first. Writes a PNG to `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stepped = set(frame.loc[frame["step"], "metric"])
    metrics = sorted(dict.fromkeys(frame["metric"]), key=lambda m: (m not in stepped,))
    metrics = metrics[:max_panels]
    columns = min(4, max(1, len(metrics)))
    rows = max(1, math.ceil(len(metrics) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat[len(metrics) :]:
        axis.set_visible(False)
    for axis, metric in zip(axes.flat, metrics, strict=False):
        series = frame[frame["metric"] == metric]
        x = range(len(series))
        axis.errorbar(x, series["mean"], yerr=series["std"], marker="o", ms=3, capsize=2)
        steps = [i for i, step in enumerate(series["step"]) if step]
        axis.plot(steps, series["mean"].iloc[steps], "o", color="red", ms=7, fillstyle="none")
        axis.set_xticks(list(x), [c[:7] for c in series["commit"]], rotation=45, fontsize=7)
        axis.set_title(metric, fontsize=7, color="red" if metric in stepped else "black")
        axis.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def history_json(frame: pd.DataFrame) -> str:
    records = frame.drop(columns=["when"]).to_dict(orient="records")
    clean = [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for r in records
    ]
    return json.dumps({"entries": clean}, indent=2, default=str)
