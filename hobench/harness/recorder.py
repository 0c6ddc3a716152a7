"""Records what a strategy did: one point per evaluation or hyper-iteration. Strategies never
write files; the runner turns the recorder's points into the cell's JSON line."""

from __future__ import annotations

import math
from typing import Any

import torch

from hobench.harness.budget import Budget

# Hyperparameters with more entries than this are summarised, not stored whole.
MAX_STORED_ENTRIES = 8


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

    def point(
        self,
        hp: dict[str, Any],
        val_loss: float | None,
        val_acc: float | None = None,
        test_acc: float | None = None,
        failed: bool = False,
        **extra: Any,
    ) -> dict:
        val_loss = _finite_or_none(val_loss)
        failed = failed or val_loss is None
        if not failed and (self._best is None or val_loss < self._best["val_loss"]):
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
            "hp": {k: summarise(v) for k, v in hp.items()},
            **extra,
        }
        self.points.append(point)
        return point

    def finish(self, **metrics: Any) -> None:
        """The final metrics of the configuration the strategy returns (task's final protocol)."""
        self.final.update(metrics)
