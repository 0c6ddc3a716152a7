"""The strategy protocol: `run(task, budget, rng, recorder)`.

A strategy reads the task, spends the budget, reports every evaluation or hyper-iteration to the
recorder and ends with `recorder.finish(...)`. It never writes files. Strategies are registered
by name in `hobench.registry.STRATEGIES`; third-party packages add theirs through the
`hobench.strategies` entry-point group (the entry point names a Strategy subclass).
"""

from __future__ import annotations

import numpy as np

from hobench.harness.budget import Budget
from hobench.harness.cost import CostModel
from hobench.harness.recorder import Recorder
from hobench.tasks.base import Task


class Strategy:
    """Base class; subclasses take their suite parameters as keyword arguments."""

    name: str = "strategy"
    # The domain of each suite parameter (hobench.domains), checked before any cell runs.
    domains: dict = {}

    @classmethod
    def check_params(cls, params: dict) -> None:
        """Checks that involve several parameters or the environment; raise ParamError."""

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder) -> None:
        raise NotImplementedError

    def first_unit(self, task: Task, costs: CostModel) -> tuple[int, int, str]:
        """(FLOPs, inner steps, name) of the first unit of work this strategy spends on `task`:
        what a budget must pay for at least, checked before any cell runs. A strategy that
        does not say is checked only when it runs."""
        raise NotImplementedError


def priced(task: Task, budget: Budget) -> CostModel:
    """The task's cost model, with the budget priced in its plain-training runs. Counting is
    bookkeeping, so it stays off the budget's clock."""
    with budget.paused():
        costs = task.cost_model()
        budget.price(costs.plain_run)
    return costs


def check_first_unit_fits(strategy: Strategy, task: Task, budget: Budget, costs: CostModel):
    """Refuse, in one line, a budget that cannot pay for a single unit of this strategy."""
    with budget.paused():
        error = budget.smallest_unit_error(*strategy.first_unit(task, costs))
    if error is not None:
        raise error
