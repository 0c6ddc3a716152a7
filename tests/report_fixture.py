"""Schema-valid `runs.jsonl` fixtures with known numbers, for the report and compare tests.

Two tasks (a hyper-cleaning one with a radius and reference rows, an auxiliary-target one), three
strategies, three seeds, plus one failed cell. Each (task, strategy) has a mean test accuracy
`ACC[...]`; seeds add `SEED_OFFSETS`, which sum to zero, so the mean over seeds is `ACC[...]`.
`make_records(strategies=WITH_DEFAULT)` adds a `default` strategy, whose cells price one plain run
in seconds for the cost model check.

Per-unit numbers are binary-exact so the cost model check's ratios are exact: a strategy's cost per
unit is `UNIT_COST[...]` on every seed, and its seconds per unit `UNIT_S[...]` times
`UNIT_S_SCALE[seed]`, whose median is 1 (and mean is not), so medians over seeds are `UNIT_S`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TASKS = {
    "hypercleaning": {"source": "embedded", "radius": 1250},
    "auxtarget": {"source": "embedded"},
}
STRATEGIES = ("random", "reverse-hg", "rtho")  # id == registered kind
WITH_DEFAULT = ("default", *STRATEGIES)
SEEDS = (0, 1, 2)
SEED_OFFSETS = (-0.01, 0.0, 0.01)
ACC = {
    ("hypercleaning", "default"): 0.86,
    ("auxtarget", "default"): 0.59,
    ("hypercleaning", "random"): 0.85,
    ("hypercleaning", "reverse-hg"): 0.90,
    ("hypercleaning", "rtho"): 0.88,
    ("auxtarget", "random"): 0.60,  # tied with reverse-hg: ranks 2.5 each
    ("auxtarget", "reverse-hg"): 0.60,
    ("auxtarget", "rtho"): 0.62,
}
WALL_S = {"default": 5.0, "random": 10.0, "reverse-hg": 20.0, "rtho": 40.0}  # seed s adds s
PEAK_RSS_MB = {"default": 300.0, "random": 400.0, "reverse-hg": 900.0, "rtho": 600.0}
BUDGET_COST = 10.0  # plain-training equivalents
PLAIN_RUN_FLOPS = 1_000_000
UNITS = {"default": 1, "random": 8, "reverse-hg": 20, "rtho": 40}
UNIT_COST = {"default": 1.25, "random": 1.25, "reverse-hg": 0.5, "rtho": 0.125}
UNIT_S = {"default": 2.5, "random": 2.5, "reverse-hg": 1.5, "rtho": 0.75}
UNIT_S_SCALE = (0.5, 1.0, 2.0)
OVERRUN_S = {"rtho": 0.5}  # seconds past the seconds budget per seed index: 0, 0.5, 1.0
ORACLE_ACC = 0.91
BASELINE_ACC = 0.87
DH_F1 = 0.80
FAILED_CELL = "auxtarget/random/3"
FAILED_ERROR = "RuntimeError: planted failure"


def _trajectory(
    wall_s: float, cost: float, final_loss: float, fail_first: bool
) -> list[dict[str, Any]]:
    points, best = [], None
    for i in range(5):
        loss = None if (fail_first and i == 0) else final_loss + 0.5 / (i + 1)
        if loss is not None:
            best = loss if best is None else min(best, loss)
        points.append(
            {
                "elapsed_s": wall_s * (i + 1) / 5,
                "inner_steps": 100 * (i + 1),
                "cost": cost * (i + 1) / 5,
                "val_loss": loss,
                "val_acc": None if loss is None else 1.0 - loss / 2,
                "test_acc": None if loss is None else 1.0 - loss / 2,
                "incumbent_val_loss": best,
                "incumbent_test_acc": None if best is None else 1.0 - best / 2,
                "failed": loss is None,
                "hp": {"lr": 0.1 * (i + 1)},
            }
        )
    return points


def _manifest(calibration_s: float | None) -> dict[str, Any]:
    return {
        "hobench": "0.1.0",
        "git_commit": "0123456789abcdef0123",
        "python": "3.11.7",
        "packages": {"torch": "2.13.0", "optuna": "5.0.0", "numpy": "2.4.6"},
        "device": "cpu",
        "device_name": "Test CPU",
        "cuda": None,
        "threads": 2,
        "hostname": "fixture",
        "started_at": "2026-11-27T07:30:00Z",
        "calibration_s": calibration_s,
    }


def _cell(
    task: str, strategy: str, seed: int, acc: float, time_scale: float, calibration_s: float | None
) -> dict[str, Any]:
    offset = SEED_OFFSETS[seed]
    wall_s = (WALL_S[strategy] + seed) * time_scale
    cost = UNIT_COST[strategy] * UNITS[strategy]
    final: dict[str, Any] = {
        "test_acc": acc + offset,
        "val_loss": 0.3 + (1.0 - acc),
        "val_acc": acc,
        "regret": None,
    }
    if task == "hypercleaning":
        final["f1"] = DH_F1 + offset if strategy == "reverse-hg" else None
        final["rows"] = {
            "Oracle": {"test_acc": ORACLE_ACC + offset, "f1": 1.0},
            "Baseline": {"test_acc": BASELINE_ACC + offset},
        }
        if strategy == "reverse-hg":
            rng = np.random.default_rng(seed)
            final["lambda_clean"] = np.clip(rng.beta(5, 1, 300), 0, 1).round(4).tolist()
            final["lambda_corrupted"] = (
                np.where(rng.random(300) < 0.7, 0.0, rng.beta(1, 5, 300)).round(4).tolist()
            )
    return {
        "schema": 1,
        "suite": "fixture",
        "cell": f"{task}/{strategy}/{seed}",
        "task": task,
        "task_kind": task,
        "task_params": TASKS[task],
        "strategy": strategy,
        "strategy_kind": strategy,
        "strategy_params": {},
        "seed": seed,
        "budget": {"cost": BUDGET_COST, "seconds": 60.0, "steps": None},
        "status": "ok",
        "error": None,
        "trajectory": _trajectory(
            wall_s, cost, final["val_loss"], strategy == "random" and seed == 0
        ),
        "final": final,
        "resources": {
            "wall_s": wall_s,
            "overrun_s": OVERRUN_S.get(strategy, 0.0) * seed,
            "inner_steps": 500,
            "cost": cost,
            "flops": int(cost * PLAIN_RUN_FLOPS),
            "plain_run_flops": PLAIN_RUN_FLOPS,
            "units": UNITS[strategy],
            "unit_cost": UNIT_COST[strategy],
            "unit_s": UNIT_S[strategy] * UNIT_S_SCALE[seed] * time_scale,
            "peak_rss_mb": PEAK_RSS_MB[strategy] + 10 * seed,
            "cuda_peak_mb": None,
            "setup_s": 0.1,
        },
        "manifest": _manifest(calibration_s),
    }


def _failed_cell(calibration_s: float | None) -> dict[str, Any]:
    task, strategy, seed = FAILED_CELL.split("/")
    return {
        "schema": 1,
        "suite": "fixture",
        "cell": FAILED_CELL,
        "task": task,
        "task_kind": task,
        "task_params": TASKS[task],
        "strategy": strategy,
        "strategy_kind": strategy,
        "strategy_params": {},
        "seed": int(seed),
        "budget": {"cost": BUDGET_COST, "seconds": 60.0, "steps": None},
        "status": "failed",
        "error": FAILED_ERROR,
        "trajectory": [],
        "final": {},
        "resources": {"wall_s": 1.0, "peak_rss_mb": 300.0, "cuda_peak_mb": None},
        "manifest": _manifest(calibration_s),
    }


def make_records(
    *,
    acc_shift: dict[tuple[str, str], float] | None = None,
    time_scale: float = 1.0,
    calibration_s: float | None = 0.5,
    drop: Iterable[str] = (),
    include_failed: bool = True,
    strategies: Sequence[str] = STRATEGIES,
) -> list[dict[str, Any]]:
    """All fixture cells; `acc_shift` moves a (task, strategy)'s accuracy, `drop` removes cells,
    `strategies` picks the strategies (`WITH_DEFAULT` adds `default`)."""
    shifts = acc_shift or {}
    dropped = set(drop)
    records = [
        _cell(
            task,
            strategy,
            seed,
            ACC[task, strategy] + shifts.get((task, strategy), 0.0),
            time_scale,
            calibration_s,
        )
        for task in TASKS
        for strategy in strategies
        for seed in SEEDS
    ]
    if include_failed:
        records.append(_failed_cell(calibration_s))
    return [r for r in records if r["cell"] not in dropped]


def write_runs(directory: Path, records: list[dict[str, Any]]) -> Path:
    """Write `records` as `directory/runs.jsonl`; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(record) + "\n" for record in records)
    (directory / "runs.jsonl").write_text(lines, encoding="utf-8")
    return directory


def write_fixture(directory: Path, **options: Any) -> Path:
    """`write_runs(directory, make_records(**options))`."""
    return write_runs(directory, make_records(**options))
