"""What the tasks with a dimension knob share: their reference values for the crossover study.

A knob task (`featuredecay`: m weight decays; `lrschedule`: T steps split into m step-size
pieces) reports, with its final metrics, a `crossover` record the report's crossover figure reads:
m, T, the size of one training state (what Reverse-HG stores T+1 of), and two reference
validation losses that do not depend on any strategy: the defaults', and the best one with every
hyperparameter equal (a fixed 1-D grid; the m = 1 problem, reachable at every m). The figure's
target is a fraction of the gain of the second over the first. A task of one kind on several
data sets (`tabulardecay`) adds a `series` (the data set's name), so that the figure's axes never
mix data sets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from hobench.harness.failures import Diverged
from hobench.harness.shared import computed_once
from hobench.tasks.base import HyperParam

SINGLE_GRID_POINTS = 25  # the 1-D grid of the "every hyperparameter equal" reference


def log_grid(low: float, high: float, points: int = SINGLE_GRID_POINTS) -> list[float]:
    """`points` values from low to high, evenly spaced on a log scale (both ends included)."""
    step = (math.log(high) - math.log(low)) / (points - 1)
    return [math.exp(math.log(low) + i * step) for i in range(points)]


def single_value_references(
    key: dict[str, Any],
    val_loss: Callable[[float], float],
    default: float,
    grid: list[float],
) -> dict[str, float]:
    """The validation loss at the default value and the best over `grid`, every hyperparameter
    set to that one value; computed once per run for every task sharing `key` (its m aside)."""

    def compute() -> dict[str, float]:
        losses = [val_loss(v) for v in grid]
        finite = [(loss, v) for loss, v in zip(losses, grid, strict=True) if math.isfinite(loss)]
        if not finite:
            raise Diverged(len(grid), "reference-grid value")
        best_loss, best_value = min(finite)
        return {
            "default_val_loss": val_loss(default),
            "single_val_loss": best_loss,
            "single_value": best_value,
        }

    return computed_once(key, compute)


def state_mb(params: Any) -> float:
    """MB of one training state (the weights, for plain gradient descent)."""
    leaves = torch.utils._pytree.tree_leaves(params)
    return sum(x.numel() * x.element_size() for x in leaves) / 2**20


def crossover_record(
    key: dict[str, Any],
    val_loss: Callable[[float], float],
    default: float,
    bounds: tuple[float, float],
    m: int,
    steps: int,
    params0: Any,
    **extra: Any,
) -> dict[str, Any]:
    """A knob task's `crossover` record: `extra` (e.g. the data set's name), m, T, one state's
    size and the single-value references over the log grid of `bounds`."""
    references = single_value_references(key, val_loss, default, log_grid(*bounds))
    return {**extra, "m": m, "T": steps, "state_mb": state_mb(params0), **references}


def log_scale_space(
    prefix: str, count: int, bounds: tuple[float, float], default: float, doc: str
) -> list[HyperParam]:
    """`count` hyperparameters `{prefix}_{i}` on a log scale; `doc` is formatted with i."""
    low, high = bounds
    return [
        HyperParam(f"{prefix}_{i}", low, high, default=default, log=True, doc=doc.format(i))
        for i in range(count)
    ]
