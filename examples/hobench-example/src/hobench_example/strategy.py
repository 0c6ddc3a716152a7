"""Coordinate search: move one hyperparameter at a time; halve the step when nothing improves."""

from __future__ import annotations

import numpy as np

from hobench.harness.budget import Budget
from hobench.harness.recorder import Recorder
from hobench.strategies.base import Strategy, check_first_unit_fits, priced
from hobench.tasks.base import Task


class CoordinateSearch(Strategy):
    """Coordinate search from the task's defaults: try ±step along each hyperparameter in turn,
    keep any improvement, halve the step after a sweep without one; until the budget ends."""

    def __init__(self, step: float = 0.25) -> None:  # suite parameters are keyword arguments
        self.step = step

    def first_unit(self, task, costs):
        # (FLOPs, inner steps, name) of the first unit: checked before any cell runs.
        return costs.evaluation(), task.steps_per_evaluation(), "evaluation"

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder):
        costs = priced(task, budget)  # the budget learns what a plain training run costs
        check_first_unit_fits(self, task, budget, costs)
        flops, steps = costs.evaluation(), task.steps_per_evaluation()
        space = {p.name: p for p in task.space()}

        def evaluate(config: dict[str, float]) -> float:
            evaluation = task.evaluate(config)
            budget.spend(flops, steps)  # spend what the evaluation cost
            recorder.point(config, evaluation.val_loss, evaluation.val_acc, evaluation.test_acc)
            return evaluation.val_loss

        best = task.default_config()
        best_loss = evaluate(best)
        step = self.step
        names = list(space)
        while budget.fits(flops, steps):
            improved = False
            for name in rng.permutation(names):  # the seed decides the order
                for sign in (1.0, -1.0):
                    if not budget.fits(flops, steps):
                        break
                    p = space[name]
                    value = min(p.high, max(p.low, best[name] + sign * step * (p.high - p.low)))
                    candidate = {**best, name: value}
                    loss = evaluate(candidate)
                    if loss < best_loss:
                        best, best_loss, improved = candidate, loss, True
            if not improved:
                step /= 2
        budget.stop()
        # The final protocol is the task's, the same for every strategy.
        recorder.finish(config=best, **task.finalize_config(best))
