"""Multi-fidelity black-box strategies: Optuna's pruners, with training steps as the fidelity.

A trial trains one configuration from s_0 and reports its validation loss at the rungs
r, r·η, r·η², ... (below T; r = `min_resource`, η = `reduction_factor`); after each report
Optuna's pruner (`SuccessiveHalvingPruner`, `HyperbandPruner`) decides whether it trains on.
A trial that reaches T is complete: it is told to the study with its validation loss at T,
which is exactly `task.evaluate(config)`. The answer is the best complete trial, retrained by
`task.finalize_config` as every black-box strategy's answer is.

Cost: a trial pays for the steps it actually trained plus one validation pass per report
(`k · step + reports · outer` FLOPs, in the same plain-training currency as every strategy), so
a pruned trial costs only what it trained. Each stretch between two reports is one unit of
the budget: it starts only if it fits, so no limit is exceeded; the search ends at the first
stretch that does not fit. Hyperband's brackets share one grid of rungs, so a trial in a
bracket that first looks later still reports (and pays for) the earlier rungs' validations.
"""

from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from hobench.domains import Interval
from hobench.harness.budget import Budget
from hobench.harness.failures import all_diverged
from hobench.harness.recorder import Recorder
from hobench.registry import STRATEGIES
from hobench.strategies.base import Strategy, check_first_unit_fits, priced
from hobench.tasks.base import Task

# Optuna's Hyperband assigns brackets by hashing the study's name: a fixed name keeps it seeded.
STUDY_NAME = "hobench"


def rungs(steps: int, min_resource: int, reduction_factor: int) -> list[int]:
    """The steps at which a trial reports: min_resource · η^k below T, then T itself."""
    points, rung = [], min_resource
    while rung < steps:
        points.append(rung)
        rung *= reduction_factor
    return [*points, steps]


class MultiFidelity(Strategy):
    """Ask a sampler for a configuration, train it rung by rung while the pruner keeps it."""

    domains = {
        "min_resource": Interval(0, integer=True, meaning="0 takes T / reduction_factor³"),
        "reduction_factor": Interval(2, integer=True),
    }

    def __init__(self, min_resource: int = 0, reduction_factor: int = 3) -> None:
        self.min_resource, self.reduction_factor = min_resource, reduction_factor

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)

    def make_pruner(self, steps: int) -> optuna.pruners.BasePruner:
        raise NotImplementedError

    def resource(self, steps: int) -> int:
        """The first rung r: `min_resource`, or T / η³ (at least 1) when it is 0."""
        return self.min_resource or max(1, steps // self.reduction_factor**3)

    def first_unit(self, task: Task, costs):
        if type(task).training is Task.training:
            raise ValueError(
                f"{self.name} needs a task that can be scored during training "
                f"(Task.training); task {task.name!r} only evaluates whole runs"
            )
        T = task.steps_per_evaluation()
        if self.resource(T) >= T:
            raise ValueError(
                f"min_resource={self.min_resource} must be below the task's T={T} steps"
            )
        # The first trial is the best of one at every rung, so it always trains to T.
        reports = len(rungs(T, self.resource(T), self.reduction_factor))
        flops = task.blackbox_setup_flops() + T * costs.step() + reports * costs.outer()
        return flops, T, f"trial of {T} steps with {reports} validations"

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder):
        space = task.space()
        distributions = {p.name: FloatDistribution(p.low, p.high, log=p.log) for p in space}
        costs = priced(task, budget)
        check_first_unit_fits(self, task, budget, costs)
        T = task.steps_per_evaluation()
        with budget.paused():
            step, outer, setup = costs.step(), costs.outer(), task.blackbox_setup_flops()
        study = optuna.create_study(
            study_name=STUDY_NAME,
            sampler=self.make_sampler(int(rng.integers(2**31 - 1))),
            pruner=self.make_pruner(T),
        )
        points = rungs(T, self.resource(T), self.reduction_factor)
        searching = True
        while searching:
            trial = study.ask(distributions)
            trained, ended, evaluation = 0, "budget", None
            run = task.evaluations(trial.params, points)
            for rung in points:
                flops = setup + (rung - trained) * step + outer
                if not budget.fits(flops, rung - trained):
                    searching = False
                    break
                try:
                    _, evaluation = next(run)
                except (FloatingPointError, OverflowError):  # a blow-up is a failed trial
                    evaluation = None
                budget.spend(flops, rung - trained)
                trained, setup = rung, 0
                if evaluation is None or evaluation.failed:
                    ended = "failed"
                    study.tell(trial, state=TrialState.FAIL)
                    break
                if rung == T:  # trained to the end: complete, whatever a last check would say
                    ended = "complete"
                    study.tell(trial, evaluation.val_loss)
                    break
                trial.report(evaluation.val_loss, rung)
                if trial.should_prune():
                    ended = "pruned"
                    study.tell(trial, state=TrialState.PRUNED)
                    break
            if trained:
                recorder.point(
                    trial.params,
                    None if evaluation is None else evaluation.val_loss,
                    None if evaluation is None else evaluation.val_acc,
                    None if evaluation is None else evaluation.test_acc,
                    failed=ended == "failed",
                    candidate=ended == "complete",
                    trained_steps=trained,
                    ended=ended,
                )
        budget.stop()
        completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not completed:
            all_diverged(recorder.points, "trial")
            raise RuntimeError("no trial trained to the end within the budget")
        best = study.best_trial.params
        recorder.finish(config=best, **task.finalize_config(best))


@STRATEGIES.register("asha")
class Asha(MultiFidelity):
    """Successive halving, asynchronous (ASHA), through Optuna's SuccessiveHalvingPruner:
    random configurations, each trained to the next rung (r, r·η, r·η², ... steps, then T) only
    while its validation loss there is in the best 1/η of the trials that reached it. A pruned
    trial is charged only the steps it trained and its validations."""

    domains = {
        **MultiFidelity.domains,
        "min_early_stopping_rate": Interval(0, integer=True),
    }

    def __init__(
        self, min_resource: int = 0, reduction_factor: int = 3, min_early_stopping_rate: int = 0
    ) -> None:
        super().__init__(min_resource, reduction_factor)
        self.min_early_stopping_rate = min_early_stopping_rate

    def make_pruner(self, steps):
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=self.resource(steps),
            reduction_factor=self.reduction_factor,
            min_early_stopping_rate=self.min_early_stopping_rate,
        )


@STRATEGIES.register("hyperband")
class Hyperband(MultiFidelity):
    """Hyperband through Optuna's HyperbandPruner: random configurations spread over brackets
    of successive halving that prune from r, r·η, r·η², ... steps on (T the most a trial
    trains), hedging between many short trials and few long ones. A pruned trial is charged
    only the steps it trained and its validations."""

    def make_pruner(self, steps):
        return optuna.pruners.HyperbandPruner(
            min_resource=self.resource(steps),
            max_resource=steps,
            reduction_factor=self.reduction_factor,
        )


@STRATEGIES.register("bohb")
class Bohb(Hyperband):
    """BOHB-like: Optuna's TPE sampler (learning from complete and pruned trials) with its
    HyperbandPruner, the combination Optuna documents; not BOHB's own per-budget density
    model. Costs as for hyperband."""

    domains = {**Hyperband.domains, "n_startup_trials": Interval(0, integer=True)}

    def __init__(
        self, min_resource: int = 0, reduction_factor: int = 3, n_startup_trials: int = 5
    ) -> None:
        super().__init__(min_resource, reduction_factor)
        self.n_startup_trials = n_startup_trials

    def make_sampler(self, seed):
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=self.n_startup_trials, multivariate=True
        )
