"""Run one cell (task × strategy × seed) in this process and build its results record.

A failing strategy is a result, not a crash: any exception becomes status "failed" with a
one-line error and the trajectory recorded so far, so one bad cell never stops a suite.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Any

import numpy as np
import torch

from hobench.harness.budget import LIMITS, Budget
from hobench.harness.compile_cache import compile_cache_counts
from hobench.harness.failures import FINAL_DIVERGED, CellFailure, storage_error
from hobench.harness.measure import MemoryMeter, resolve_device, synchronize
from hobench.harness.recorder import Recorder, summarise
from hobench.harness.suite import Cell
from hobench.harness.warmup import compiles
from hobench.hypergrad.compiled import (
    compile_failure,
    compile_times,
    default_path,
    packages_loaded,
)
from hobench.registry import STRATEGIES, TASKS

SCHEMA_VERSION = 1
MAX_ERROR_CHARS = 500
log = logging.getLogger("hobench")


def error_line(exc: BaseException) -> str:
    """`ExcType: first line of the message`, at most MAX_ERROR_CHARS characters."""
    lines = str(exc).strip().splitlines()
    if isinstance(exc, CellFailure):
        text = lines[0]
    else:
        text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def jsonable(value: Any) -> Any:
    """`value` as strict JSON data: non-finite floats → None, numpy/torch scalars → Python."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return jsonable(summarise(value))
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed every global generator a task might use; return the strategy's own generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return np.random.default_rng(seed)


def _final_metrics(recorder: Recorder, task: Any) -> dict[str, Any]:
    """The recorder's final metrics plus the task's regret; raises if they are unusable."""
    final = dict(recorder.final)
    if not final:
        raise CellFailure("strategy ended without final metrics (recorder.finish not called)")
    if "val_loss" not in final:
        raise CellFailure("final metrics have no val_loss")
    val_loss = final["val_loss"]
    if val_loss is None:
        raise CellFailure("final metrics have val_loss None (the strategy recorded no loss)")
    if not math.isfinite(float(val_loss)):
        raise CellFailure(FINAL_DIVERGED)
    if final.get("regret") is None:
        final["regret"] = task.regret(float(val_loss))
    if final.get("test_acc") is not None:
        final["n_test"] = task.test_size()
    return final


def run_cell(
    cell: Cell, suite_name: str, data_dir: str | None, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Run `cell` here and return its record (results schema version 1, strict JSON)."""
    budget = Budget(**cell.budget)
    recorder = Recorder(budget)
    status, error, final = "ok", None, {}
    setup_s, wall_s, cpu_s, device = 0.0, 0.0, 0.0, cell.device
    run_start: float | None = None
    cpu_start = 0.0
    memory = MemoryMeter()  # the worker after its imports, before the task
    compiled_before, cache_before = len(compile_times()), compile_cache_counts()
    loaded_before = packages_loaded()
    setup_start = time.perf_counter()
    try:
        device = resolve_device(cell.device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(device)
        rng = seed_everything(cell.seed)
        task = TASKS.create(
            cell.task_kind, seed=cell.seed, device=device, data_dir=data_dir, **cell.task_params
        )
        strategy = STRATEGIES.create(cell.strategy_kind, **cell.strategy_params)
        task.prepare()  # what every strategy's final protocol shares, off the clock
        memory.end_phase()
        setup_s = time.perf_counter() - setup_start
        run_start, cpu_start = time.perf_counter(), time.process_time()
        budget.start()  # the budget covers the strategy, not data loading
        with default_path(cell.compile):  # the suite's path where the strategy does not say
            strategy.run(task, budget, rng, recorder)
        synchronize(device)
        wall_s, cpu_s = time.perf_counter() - run_start, time.process_time() - cpu_start
        final = _final_metrics(recorder, task)
    except Exception as exc:
        if storage_error(exc):
            raise  # the disk is full, not the cell failed: the runner stops the run
        log.error("cell %s failed", cell.key, exc_info=True)
        if run_start is not None and not wall_s:
            wall_s, cpu_s = time.perf_counter() - run_start, time.process_time() - cpu_start
        status, error, final = "failed", error_line(exc), dict(recorder.final)

    cuda = device.startswith("cuda") and torch.cuda.is_available()
    memory.end_phase()
    resources = {
        "wall_s": wall_s,
        # The process's CPU seconds over wall_s's span: wall_s / cpu_s shows how long the cell
        # waited for a CPU (a loaded machine), which `compare` reads before gating time.
        "cpu_s": cpu_s,
        "overrun_s": budget.overrun,  # the search's, not the unbudgeted final protocol's
        "inner_steps": budget.steps_used,
        "cost": budget.cost_used,
        "flops": budget.flops_used,
        "plain_run_flops": budget.plain_run_flops,
        "units": budget.units,
        "unit_cost": budget.cost_used / budget.units if budget.units and budget.cost_used else None,
        "unit_s": budget.unit_median_s(),
        "peak_rss_mb": memory.peak_mb,
        "baseline_rss_mb": memory.rss_mb,
        "added_rss_mb": memory.added_mb,  # less library pages paged in: see MemoryMeter
        "paged_in_mb": memory.paged_mb,
        "cuda_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
        "setup_s": setup_s,
        # First calls of the engine's compiled functions (compile included; in wall_s): 0 eager.
        "compile_s": sum(seconds for _, seconds in compile_times()[compiled_before:]),
        "compile_fallback": compile_failure(),  # why this cell's compiled path ran eager
        # Compiled functions loaded whole from the machine's packages, not traced again; and
        # inductor's on-disk cache (hobench.harness.compile_cache): graphs loaded / generated.
        "compile_packages_loaded": packages_loaded() - loaded_before,
        **{
            f"compile_cache_{kind}": count - cache_before[kind]
            for kind, count in compile_cache_counts().items()
        },
    }
    return make_record(cell, suite_name, manifest, status, error, recorder.points, final, resources)


def make_record(
    cell: Cell,
    suite_name: str,
    manifest: dict[str, Any],
    status: str,
    error: str | None,
    trajectory: list[dict[str, Any]],
    final: dict[str, Any],
    resources: dict[str, Any],
) -> dict[str, Any]:
    """A cell's record in the results schema, as strict JSON data."""
    record = {
        "schema": SCHEMA_VERSION,
        "suite": suite_name,
        "cell": cell.key,
        "task": cell.task_id,
        "task_kind": cell.task_kind,
        "task_params": cell.task_params,
        "strategy": cell.strategy_id,
        "strategy_kind": cell.strategy_kind,
        "strategy_params": cell.strategy_params,
        "seed": cell.seed,
        "compile": compiles(cell),  # the engine's compiled path ran (false: eager)
        "budget": {name: cell.budget.get(name) for name in LIMITS},
        "status": status,
        "error": error,
        "trajectory": trajectory,
        "final": final,
        "resources": resources,
        "manifest": manifest,
    }
    return jsonable(record)


def crash_record(
    cell: Cell, suite_name: str, manifest: dict[str, Any], error: str, wall_s: float
) -> dict[str, Any]:
    """The record of a cell whose worker died before reporting (signal, OOM, exit code)."""
    resources = {
        "wall_s": wall_s,
        "overrun_s": 0.0,
        "inner_steps": None,
        "cost": None,
        "flops": None,
        "plain_run_flops": None,
        "units": None,
        "unit_cost": None,
        "unit_s": None,
        "peak_rss_mb": None,
        "baseline_rss_mb": None,
        "added_rss_mb": None,
        "paged_in_mb": None,
        "cuda_peak_mb": None,
        "setup_s": None,
        "compile_s": None,
        "compile_fallback": None,
        "compile_packages_loaded": None,
        "compile_cache_hits": None,
        "compile_cache_misses": None,
    }
    return make_record(
        cell, suite_name, manifest, "failed", error[:MAX_ERROR_CHARS], [], {}, resources
    )
