"""Reference rows that are not searches: plain training at the defaults, early-stopped.

`early-stopping` answers "how much of a tuned run's gain is just a better stopping time?": the
task's default hyperparameters (the paper's Vanilla), trained for the same T inner steps every
strategy's model gets, with the validation loss checked every `check_every` steps and the best
checkpoint returned. Its cost is the one training run plus the validation checks, spent check
by check; the whole run must fit the budget (checked before it starts).
"""

from __future__ import annotations

import numpy as np
import torch

from hobench.domains import Interval
from hobench.harness.budget import Budget
from hobench.harness.recorder import Recorder
from hobench.registry import STRATEGIES
from hobench.strategies.base import Strategy, check_first_unit_fits, priced
from hobench.tasks.base import Task


@STRATEGIES.register("early-stopping")
class EarlyStopping(Strategy):
    """Vanilla (the task's defaults) trained T steps, the best validation checkpoint returned.

    The validation loss is checked every `check_every` steps; the reference row for plain training
    with early stopping.
    """

    domains = {"check_every": Interval(1, integer=True)}

    def __init__(self, check_every: int = 10) -> None:
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.check_every = check_every

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder):
        problem = task.gradient_problem()
        T, dynamics = problem.steps, problem.dynamics
        costs = priced(task, budget)
        check_first_unit_fits(self, task, budget, costs)
        flops = self.first_unit(task, costs)[0]
        chunk = self.check_every * costs.step() + costs.outer()
        hp = problem.project(problem.hp0)
        state = dynamics.init(problem.params0(), hp)
        best = None
        with torch.no_grad():
            for t in range(1, T + 1):
                state = dynamics.step(state, hp, problem.batch_at(t))
                if t % self.check_every == 0:  # a unit: check_every steps and one validation
                    ev = problem.evaluate(dynamics.params(state), hp)
                    budget.spend(chunk, self.check_every)
                    recorder.point(hp, ev.val_loss, ev.val_acc, ev.test_acc, step=t)
                    if best is None or ev.val_loss < best[0].val_loss:
                        best = (ev, t)
        budget.spend(flops - budget.flops_used, T - budget.steps_used)  # steps after the last check
        budget.stop()
        ev, t = best
        recorder.finish(
            val_loss=ev.val_loss,
            val_acc=ev.val_acc,
            test_acc=ev.test_acc,
            stopped_at=t,
            **ev.extra,
        )

    def first_unit(self, task, costs):
        if not task.final_protocol_is_plain_training:
            raise ValueError(
                f"early-stopping is a reference for plain training, and task {task.name!r} "
                "has another final protocol; exclude this pair in the suite"
            )
        if costs.problem is None:
            raise NotImplementedError("early-stopping needs the task's gradient problem")
        T = costs.problem.steps
        if self.check_every > T:
            raise ValueError(f"check_every={self.check_every} exceeds the task's T={T} steps")
        flops = T * costs.step() + (T // self.check_every) * costs.outer()
        return flops, T, "early-stopped training run"
