"""Black-box strategies: Optuna's own samplers driven through ask/tell.

We do not rewrite what Optuna does. Each evaluation trains the task once from scratch with a
configuration and costs the task's `steps_per_evaluation()` inner steps. A diverging evaluation
(NaN or inf validation loss) is told to Optuna as failed and recorded; the search goes on.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from hobench.harness.budget import Budget
from hobench.harness.recorder import Recorder
from hobench.registry import STRATEGIES
from hobench.strategies.base import Strategy
from hobench.tasks.base import Evaluation, HyperParam, Task

optuna.logging.set_verbosity(optuna.logging.WARNING)


def grid_values(param: HyperParam, k: int) -> list[float]:
    """k points spanning the range, geometric on a log scale."""
    if k == 1:
        return [param.default]
    if param.log:
        return [float(v) for v in np.geomspace(param.low, param.high, k)]
    return [float(v) for v in np.linspace(param.low, param.high, k)]


def grid_resolution(evaluations: int, dims: int) -> int:
    """Points per dimension so the whole grid fits in the affordable evaluations (at least 2)."""
    return max(2, math.floor(evaluations ** (1 / dims) + 1e-9))


class OptunaStrategy(Strategy):
    """Ask a sampler for a configuration, evaluate it, tell the result; until the budget ends."""

    def make_sampler(self, space, budget, task, seed: int) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def suggestions(self, space, rng) -> Iterator[dict[str, float]] | None:
        """Configurations to evaluate in order instead of sampling; when given, the search
        ends with them (None: the sampler proposes every configuration)."""
        return None

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder):
        space = task.space()
        distributions = {p.name: FloatDistribution(p.low, p.high, log=p.log) for p in space}
        cost = task.steps_per_evaluation()
        if budget.steps is not None and budget.steps < cost:
            raise ValueError(f"budget of {budget.steps} steps is below one evaluation ({cost})")
        seed = int(rng.integers(2**31 - 1))
        study = optuna.create_study(sampler=self.make_sampler(space, budget, task, seed))
        planned = self.suggestions(space, rng)
        while budget.fits(cost):
            if planned is not None:
                config = next(planned, None)
                if config is None:
                    break
                study.enqueue_trial(config)
            trial = study.ask(distributions)
            evaluation = _safe_evaluate(task, trial.params)
            budget.spend(cost)
            if evaluation.failed:
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, evaluation.val_loss)
            recorder.point(
                trial.params,
                evaluation.val_loss,
                evaluation.val_acc,
                evaluation.test_acc,
                failed=evaluation.failed,
            )
        budget.stop()
        completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not completed:
            raise RuntimeError("no evaluation completed within the budget")
        best = study.best_trial.params
        recorder.finish(config=best, **task.finalize_config(best))


def _safe_evaluate(task: Task, config: dict[str, float]) -> Evaluation:
    """Evaluate; a numerical blow-up inside training is a failed trial, not a crash."""
    try:
        return task.evaluate(config)
    except (FloatingPointError, OverflowError):
        return Evaluation(val_loss=float("nan"))


@STRATEGIES.register("random")
class RandomSearch(OptunaStrategy):
    """Optuna's RandomSampler; where the task states its own random-search distributions (the
    paper's ρ ~ U(0,4), η ~ Exp(0.1), μ ~ U(0,1) for auxtarget), those are used instead."""

    def __init__(self, use_task_prior: bool = True) -> None:
        self.use_task_prior = use_task_prior

    def make_sampler(self, space, budget, task, seed):
        self._prior = getattr(task, "random_search_prior", None) if self.use_task_prior else None
        return optuna.samplers.RandomSampler(seed=seed)

    def suggestions(self, space, rng):
        if self._prior is None:
            return None
        bounds = {p.name: (p.low, p.high) for p in space}
        return (
            {k: float(np.clip(v, *bounds[k])) for k, v in self._prior(rng).items()}
            for _ in itertools.count()
        )


@STRATEGIES.register("tpe")
class TPE(OptunaStrategy):
    def __init__(self, n_startup_trials: int = 5, multivariate: bool = True) -> None:
        self.n_startup_trials, self.multivariate = n_startup_trials, multivariate

    def make_sampler(self, space, budget, task, seed):
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=self.n_startup_trials, multivariate=self.multivariate
        )


@STRATEGIES.register("gp")
class GaussianProcess(OptunaStrategy):
    def __init__(self, n_startup_trials: int = 5) -> None:
        self.n_startup_trials = n_startup_trials

    def make_sampler(self, space, budget, task, seed):
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.n_startup_trials)


@STRATEGIES.register("qmc")
class QuasiMonteCarlo(OptunaStrategy):
    def make_sampler(self, space, budget, task, seed):
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)


@STRATEGIES.register("cmaes")
class CmaEs(OptunaStrategy):
    def make_sampler(self, space, budget, task, seed):
        try:
            import cmaes  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(
                "the cmaes strategy needs the `cmaes` package: pip install cmaes"
            ) from exc
        return optuna.samplers.CmaEsSampler(seed=seed)


@STRATEGIES.register("grid")
class GridSearch(OptunaStrategy):
    """k points per dimension (geometric on log scales), visited in a seeded random order so a
    grid cut short by the budget still covers the space evenly. k is the largest number whose
    full grid fits the budget: the step budget divided by the cost of one evaluation, or — with
    a time budget only — the seconds divided by the measured time of one evaluation at the
    defaults (at least 2 per dimension). The points are enqueued into the study: Optuna's
    GridSampler stops its study from inside `tell`, which only works under `optimize`."""

    def __init__(self, points_per_dim: int = 0) -> None:
        self.points_per_dim = points_per_dim

    def make_sampler(self, space, budget, task, seed):
        self._k = self.points_per_dim or grid_resolution(self._affordable(budget, task), len(space))
        return optuna.samplers.RandomSampler(seed=seed)

    def suggestions(self, space, rng):
        axes = [grid_values(p, self._k) for p in space]
        points = [
            dict(zip([p.name for p in space], values, strict=True))
            for values in itertools.product(*axes)
        ]
        return (points[i] for i in rng.permutation(len(points)))

    @staticmethod
    def _affordable(budget: Budget, task: Task) -> int:
        counts = []
        if budget.steps is not None:
            counts.append(budget.steps // task.steps_per_evaluation())
        if budget.seconds is not None:
            started = time.perf_counter()
            task.evaluate(task.default_config())  # timing probe; not charged, not recorded
            counts.append(int(budget.seconds / max(time.perf_counter() - started, 1e-6)))
        return max(1, min(counts))


@STRATEGIES.register("default")
class Default(Strategy):
    """One training run at the task's default hyperparameters (the paper's Vanilla row)."""

    def run(self, task, budget, rng, recorder):
        config = task.default_config()
        evaluation = _safe_evaluate(task, config)
        budget.spend(task.steps_per_evaluation())
        recorder.point(config, evaluation.val_loss, evaluation.val_acc, evaluation.test_acc)
        budget.stop()
        recorder.finish(config=config, **task.finalize_config(config))
