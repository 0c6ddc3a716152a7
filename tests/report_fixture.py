"""Schema-valid `runs.jsonl` fixtures with known numbers, for the report and compare tests.

Two tasks (a hyper-cleaning one with a radius and reference rows, an auxiliary-target one), three
strategies, three seeds, plus one failed cell. Each (task, strategy) has a mean test accuracy
`ACC[...]`; seeds add `SEED_OFFSETS`, which sum to zero, so the mean over seeds is `ACC[...]`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

TASKS = {
    "hypercleaning": {"source": "embedded", "radius": 1250},
    "auxtarget": {"source": "embedded"},
}
STRATEGIES = ("random", "reverse-hg", "rtho")  # id == registered kind
SEEDS = (0, 1, 2)
SEED_OFFSETS = (-0.01, 0.0, 0.01)
ACC = {
    ("hypercleaning", "random"): 0.85,
    ("hypercleaning", "reverse-hg"): 0.90,
    ("hypercleaning", "rtho"): 0.88,
    ("auxtarget", "random"): 0.60,  # tied with reverse-hg: ranks 2.5 each
    ("auxtarget", "reverse-hg"): 0.60,
    ("auxtarget", "rtho"): 0.62,
}
WALL_S = {"random": 10.0, "reverse-hg": 20.0, "rtho": 40.0}  # seed s adds s seconds
PEAK_RSS_MB = {"random": 400.0, "reverse-hg": 900.0, "rtho": 600.0}
ORACLE_ACC = 0.91
BASELINE_ACC = 0.87
DH_F1 = 0.80
FAILED_CELL = "auxtarget/random/3"
FAILED_ERROR = "RuntimeError: planted failure"


def _trajectory(wall_s: float, final_loss: float, fail_first: bool) -> list[dict[str, Any]]:
    points, best = [], None
    for i in range(5):
        loss = None if (fail_first and i == 0) else final_loss + 0.5 / (i + 1)
        if loss is not None:
            best = loss if best is None else min(best, loss)
        points.append(
            {
                "elapsed_s": wall_s * (i + 1) / 5,
                "inner_steps": 100 * (i + 1),
                "cost_steps": 300 * (i + 1),
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
        "budget": {"seconds": 60.0, "steps": None},
        "status": "ok",
        "error": None,
        "trajectory": _trajectory(wall_s, final["val_loss"], strategy == "random" and seed == 0),
        "final": final,
        "resources": {
            "wall_s": wall_s,
            "overrun_s": 0.0,
            "inner_steps": 500,
            "cost_steps": 1500,
            "peak_rss_mb": PEAK_RSS_MB[strategy] + 10 * seed,
            "cuda_peak_mb": None,
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
        "budget": {"seconds": 60.0, "steps": None},
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
) -> list[dict[str, Any]]:
    """All fixture cells; `acc_shift` moves a (task, strategy)'s accuracy, `drop` removes cells."""
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
        for strategy in STRATEGIES
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
