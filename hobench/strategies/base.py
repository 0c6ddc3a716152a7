"""The strategy protocol: `run(task, budget, rng, recorder)`.

A strategy reads the task, spends the budget, reports every evaluation or hyper-iteration to the
recorder and ends with `recorder.finish(...)`. It never writes files. Strategies are registered
by name in `hobench.registry.STRATEGIES`; third-party packages add theirs through the
`hobench.strategies` entry-point group (the entry point names a Strategy subclass).
"""

from __future__ import annotations

import numpy as np

from hobench.harness.budget import Budget
from hobench.harness.recorder import Recorder
from hobench.tasks.base import Task


class Strategy:
    """Base class; subclasses take their suite parameters as keyword arguments."""

    name: str = "strategy"

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder) -> None:
        raise NotImplementedError
