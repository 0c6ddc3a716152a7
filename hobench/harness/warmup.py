"""Compiling before the cells: which task × strategy pairs a run warms, and which are warm.

A cell on the compiled path loads its functions from the machine's compile cache
(hobench.harness.compile_cache). Whichever cell came first would otherwise generate them, tens
of seconds on its clock and on no other seed's. So the runner first runs one cell of each pair
that compiles and is not yet warm on this machine, keeps none of its record but its compile
seconds, and marks the pair warm: the suite's cells then all start alike, from the cache.

A pair is warm for one (task, strategy, their parameters, budget, device, threads, torch build,
hobench source): a change to any of them may change the compiled graphs, so it is warmed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from hobench.harness.suite import Cell
from hobench.hypergrad.compiled import ENV, source_digest
from hobench.registry import STRATEGIES


def compiles(cell: Cell) -> bool:
    """Whether `cell` asks for the engine's compiled path: a strategy with a `compile` parameter
    that is not false, in a suite that compiles (or a strategy that says true), and no
    HOBENCH_COMPILE=0. (Where compiling then fails, the cell runs eager and its record says
    why in `resources.compile_fallback`.)"""
    try:
        if "compile" not in STRATEGIES.parameters(cell.strategy_kind):
            return False
    except Exception:  # an unknown kind fails in its cell, with its own error
        return False
    chosen = cell.strategy_params.get("compile")
    wanted = cell.compile if chosen is None else bool(chosen)
    return wanted and os.environ.get(ENV, "").strip() != "0"


def pairs_to_warm(cells: list[Cell], folder: Path) -> list[Cell]:
    """The first cell of each compiling task × strategy pair without a warm mark in `folder`."""
    first: dict[tuple[str, str], Cell] = {}
    for cell in cells:
        if compiles(cell) and not _mark(cell, folder).exists():
            first.setdefault((cell.task_id, cell.strategy_id), cell)
    return list(first.values())


def mark_warm(cell: Cell, folder: Path) -> None:
    path = _mark(cell, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def _mark(cell: Cell, folder: Path) -> Path:
    what = {
        "task": [cell.task_kind, cell.task_params],
        "strategy": [cell.strategy_kind, cell.strategy_params],
        "budget": cell.budget,
        "device": cell.device,
        "threads": cell.threads,
        "torch": torch.__version__,
        "hobench": source_digest(),
    }
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()
    return folder / "warm" / digest[:32]
