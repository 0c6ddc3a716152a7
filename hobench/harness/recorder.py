"""Records what a strategy did: one point per evaluation or hyper-iteration. Strategies never
write files; the runner turns the recorder's points into the cell's JSON line."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import torch

from hobench.harness.budget import Budget

# Hyperparameters with more entries than this are summarised, not stored whole.
MAX_STORED_ENTRIES = 8
# Where the runner wants this worker's progress (budget spent, incumbent), for its live display.
STATUS_ENV = "HOBENCH_STATUS_FILE"
STATUS_EVERY_S = 0.5


def summarise(value: Any) -> Any:
    """A JSON-friendly view of one hyperparameter value (scalars kept, big tensors summarised)."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.numel() == 1:
            return float(value)
        if value.numel() <= MAX_STORED_ENTRIES:
            return [float(v) for v in value.flatten()]
        flat = value.flatten().double()
        return {
            "n": flat.numel(),
            "mean": float(flat.mean()),
            "min": float(flat.min()),
            "max": float(flat.max()),
            "nonzero": int((flat != 0).sum()),
        }
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return float(value)


def summarise_config(hp: dict[str, Any]) -> dict[str, Any]:
    """A JSON-friendly view of a configuration: each entry as `summarise` keeps it, except that
    more than MAX_STORED_ENTRIES scalars (a black-box search over one weight decay per feature)
    are summarised together, under "summary", as one big tensor is."""
    scalars = all(not isinstance(v, torch.Tensor) or v.numel() == 1 for v in hp.values())
    if scalars and len(hp) > MAX_STORED_ENTRIES:
        values = torch.tensor([float(v) for v in hp.values()], dtype=torch.float64)
        return {"summary": summarise(values)}
    return {k: summarise(v) for k, v in hp.items()}


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class Recorder:
    """Collects points; tracks the incumbent (lowest validation loss among successful points)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.points: list[dict] = []
        self.final: dict = {}
        self._best: dict | None = None
        self._status_path = os.environ.get(STATUS_ENV)
        self._status_at = 0.0

    def point(
        self,
        hp: dict[str, Any],
        val_loss: float | None,
        val_acc: float | None = None,
        test_acc: float | None = None,
        failed: bool = False,
        candidate: bool = True,
        **extra: Any,
    ) -> dict:
        """One evaluation or hyper-iteration. `candidate` False: a configuration that cannot be
        the answer (a multi-fidelity trial stopped before T, scored after fewer steps) is
        recorded but never becomes the incumbent."""
        val_loss = _finite_or_none(val_loss)
        failed = failed or val_loss is None
        if candidate and not failed and (self._best is None or val_loss < self._best["val_loss"]):
            self._best = {"val_loss": val_loss, "test_acc": _finite_or_none(test_acc)}
        point = {
            "elapsed_s": self.budget.elapsed,
            "inner_steps": self.budget.steps_used,
            "cost": self.budget.cost_used,
            "val_loss": val_loss,
            "val_acc": _finite_or_none(val_acc),
            "test_acc": _finite_or_none(test_acc),
            "incumbent_val_loss": None if self._best is None else self._best["val_loss"],
            "incumbent_test_acc": None if self._best is None else self._best["test_acc"],
            "failed": failed,
            "hp": summarise_config(hp),
            **extra,
        }
        self.points.append(point)
        self._report_status()
        return point

    def spent(self) -> float:
        """The fraction of the budget spent: the largest over its limits (the first one reached
        ends the search)."""
        budget, fractions = self.budget, []
        if budget.cost and budget.cost_used is not None:
            fractions.append(budget.cost_used / budget.cost)
        if budget.seconds:
            fractions.append(budget.elapsed / budget.seconds)
        if budget.steps:
            fractions.append(budget.steps_used / budget.steps)
        return max(fractions, default=0.0)

    def _report_status(self) -> None:
        """Write a small status file for the runner (atomically, at most every 0.5 s); a
        progress display is never worth failing a cell, so errors are ignored."""
        now = time.perf_counter()
        if not self._status_path or now - self._status_at < STATUS_EVERY_S:
            return
        self._status_at = now
        status = {
            "spent": self.spent(),
            "points": len(self.points),
            "incumbent_val_loss": None if self._best is None else self._best["val_loss"],
        }
        try:
            tmp = f"{self._status_path}.tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(status, handle)
            os.replace(tmp, self._status_path)
        except OSError:
            pass

    def finish(self, **metrics: Any) -> None:
        """The final metrics of the configuration the strategy returns (task's final protocol)."""
        self.final.update(metrics)
