"""Black-box strategies: Optuna's own samplers driven through ask/tell.

We do not rewrite what Optuna does. Each evaluation trains the task once from scratch with a
configuration and costs the task's `steps_per_evaluation()` inner steps. A diverging evaluation
(NaN or inf validation loss) is told to Optuna as failed and recorded; the search goes on.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from hobench.domains import Interval, ParamError
from hobench.harness.budget import Budget
from hobench.harness.failures import all_diverged
from hobench.harness.recorder import Recorder, summarise_config
from hobench.registry import STRATEGIES
from hobench.strategies.base import Strategy, check_first_unit_fits, priced
from hobench.tasks.base import Evaluation, HyperParam, Task

optuna.logging.set_verbosity(optuna.logging.WARNING)
UNSIZED_POINTS_PER_DIM = 5  # grid size when only a clock limits the search
# Configurations trained together as one vmapped computation (random, QMC and grid).
POPULATION = Interval(1, integer=True, meaning="configurations trained together")


def grid_values(param: HyperParam, k: int) -> list[float]:
    """k cell-centred points: the centres of k equal cells of the range (geometric on a log
    scale). No point is ever a corner, and k = 1 is the centre of the range."""
    low, high = (param.low, param.high)
    if param.log:
        low, high = math.log(low), math.log(high)
    centres = [low + (i + 0.5) * (high - low) / k for i in range(k)]
    return [float(math.exp(c)) if param.log else float(c) for c in centres]


def grid_shape(evaluations: int, dims: int) -> list[int]:
    """Points per dimension whose product is as large as fits in `evaluations`, as even as
    possible: the largest equal k, then one more point on the first dimensions while it fits."""
    k = max(1, math.floor(evaluations ** (1 / dims) + 1e-9))
    shape = [k] * dims
    for i in range(dims):
        if math.prod(shape) // shape[i] * (shape[i] + 1) <= evaluations:
            shape[i] += 1
    return shape


class OptunaStrategy(Strategy):
    """Ask a sampler for a configuration, evaluate it, tell the result; until the budget ends.

    One unit is one evaluation: train T steps from s_0, score on the validation set. Its FLOPs
    are counted once per task; a task's one-off cost for the black-box family (hyper-cleaning's
    scoring model) is charged to the first evaluation.

    Samplers that propose configurations independently (random, QMC, grid) take `population`
    = k: ask k trials, train them together as one vmapped computation
    (`Task.evaluate_population`), tell each and charge each its own evaluation. They propose
    the same configurations in the same order for every k; k = 1 is one at a time.
    """

    population: int = 1

    def make_sampler(self, space, budget, task, seed: int) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def suggestions(self, space, rng) -> Iterator[dict[str, float]] | None:
        """Configurations to evaluate in order instead of sampling; when given, the search
        ends with them (None: the sampler proposes every configuration)."""
        return None

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder):
        space = task.space()
        distributions = {p.name: FloatDistribution(p.low, p.high, log=p.log) for p in space}
        costs = priced(task, budget)
        check_first_unit_fits(self, task, budget, costs)
        steps = task.steps_per_evaluation()
        with budget.paused():
            unit, setup = costs.evaluation(), task.blackbox_setup_flops()
        self.evaluations = _affordable(budget, setup, unit, steps)
        seed = int(rng.integers(2**31 - 1))
        study = optuna.create_study(sampler=self.make_sampler(space, budget, task, seed))
        planned = self.suggestions(space, rng)
        while size := _batch_that_fits(budget, setup, unit, steps, self.population):
            if planned is not None:
                configs = list(itertools.islice(planned, size))
                if not configs:
                    break
                size = len(configs)
                for config in configs:
                    study.enqueue_trial(config)
            trials = [study.ask(distributions) for _ in range(size)]
            if size == 1:
                evaluations = [_safe_evaluate(task, trials[0].params)]
            else:
                evaluations = task.evaluate_population([trial.params for trial in trials])
            for trial, evaluation in zip(trials, evaluations, strict=True):
                budget.spend(setup + unit, steps, batch=size)
                setup = 0
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
            all_diverged(recorder.points, "evaluation")
            raise RuntimeError("no evaluation completed within the budget")
        best = study.best_trial.params
        recorder.finish(config=summarise_config(best), **task.finalize_config(best))

    def first_unit(self, task, costs):
        return (
            task.blackbox_setup_flops() + costs.evaluation(),
            task.steps_per_evaluation(),
            "evaluation",
        )


def _batch_that_fits(budget: Budget, setup: int, unit: int, steps: int, population: int) -> int:
    """The most evaluations, up to `population`, that may start now as one batch: each is
    charged its own cost (the one-off setup to the first), so near the end of a cost or step
    budget the last batch is smaller; under a seconds budget it is predicted from the last
    batch. 0: not even one fits."""
    for size in range(population, 0, -1):
        if budget.fits(setup + size * unit, size * steps, units=size):
            return size
    return 0


def _affordable(budget: Budget, setup: int, unit: int, steps: int) -> int | None:
    """Evaluations the cost and step limits pay for (None: only a clock limits the search)."""
    counts = []
    if budget.cost is not None:
        counts.append(int((budget.cost * budget.plain_run_flops - setup) // unit))
    if budget.steps is not None:
        counts.append(budget.steps // steps)
    return min(counts) if counts else None


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

    domains = {"population": POPULATION}

    def __init__(self, use_task_prior: bool = True, population: int = 1) -> None:
        self.use_task_prior, self.population = use_task_prior, population

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
    """Optuna's Tree-structured Parzen Estimator: random for the first `n_startup_trials`, then
    samples where a density model of the good trials beats that of the bad ones."""

    domains = {"n_startup_trials": Interval(0, integer=True)}

    def __init__(self, n_startup_trials: int = 5, multivariate: bool = True) -> None:
        self.n_startup_trials, self.multivariate = n_startup_trials, multivariate

    def make_sampler(self, space, budget, task, seed):
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=self.n_startup_trials, multivariate=self.multivariate
        )


@STRATEGIES.register("gp")
class GaussianProcess(OptunaStrategy):
    """Optuna's Gaussian-process Bayesian optimization (GPSampler): random for the first
    `n_startup_trials`, then the maximiser of an acquisition function on a GP of the trials."""

    domains = {"n_startup_trials": Interval(0, integer=True)}

    def __init__(self, n_startup_trials: int = 5) -> None:
        self.n_startup_trials = n_startup_trials

    def make_sampler(self, space, budget, task, seed):
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.n_startup_trials)


@STRATEGIES.register("qmc")
class QuasiMonteCarlo(OptunaStrategy):
    """Optuna's quasi-Monte Carlo sampler: a scrambled Sobol sequence, which covers the space
    more evenly than random search for the same number of evaluations."""

    domains = {"population": POPULATION}

    def __init__(self, population: int = 1) -> None:
        self.population = population

    def make_sampler(self, space, budget, task, seed):
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)


@STRATEGIES.register("cmaes")
class CmaEs(OptunaStrategy):
    """Optuna's CMA-ES sampler: an evolution strategy that adapts a Gaussian's mean and
    covariance to the best trials (needs the `cmaes` package)."""

    @classmethod
    def check_params(cls, params):
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ParamError(
                "kind", "the cmaes strategy needs the `cmaes` package", "pip install cmaes"
            ) from None

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
    """A cell-centred grid, visited in a seeded random order so a grid cut short by a clock
    still covers the space evenly. Its size is the largest (as even as possible) grid the cost
    and step limits pay for; with only a seconds limit it is `points_per_dim` per dimension
    (default 5) and the clock decides how much of it runs. The points are enqueued into the
    study: Optuna's GridSampler stops its study from inside `tell`, which only works under
    `optimize`.

    Points are cell-centred, spaced geometrically on log scales.
    """

    domains = {
        "points_per_dim": Interval(0, integer=True, meaning="0 sizes it by the budget"),
        "population": POPULATION,
    }

    def __init__(self, points_per_dim: int = 0, population: int = 1) -> None:
        self.points_per_dim, self.population = points_per_dim, population

    def make_sampler(self, space, budget, task, seed):
        return optuna.samplers.RandomSampler(seed=seed)

    def suggestions(self, space, rng):
        if self.points_per_dim:
            shape = [self.points_per_dim] * len(space)
        elif self.evaluations is None:
            shape = [UNSIZED_POINTS_PER_DIM] * len(space)
        else:
            shape = grid_shape(self.evaluations, len(space))
        axes = [grid_values(p, k) for p, k in zip(space, shape, strict=True)]
        points = [
            dict(zip([p.name for p in space], values, strict=True))
            for values in itertools.product(*axes)
        ]
        return (points[i] for i in rng.permutation(len(points)))


@STRATEGIES.register("default")
class Default(Strategy):
    """One training run at the task's default hyperparameters (the paper's Vanilla row)."""

    family = "reference"  # the docs' family column (tools/readme_figures.py)

    def run(self, task, budget, rng, recorder):
        config = task.default_config()
        costs = priced(task, budget)
        check_first_unit_fits(self, task, budget, costs)
        flops, steps, _ = self.first_unit(task, costs)
        evaluation = _safe_evaluate(task, config)
        budget.spend(flops, steps)
        recorder.point(config, evaluation.val_loss, evaluation.val_acc, evaluation.test_acc)
        budget.stop()
        recorder.finish(config=summarise_config(config), **task.finalize_config(config))

    def first_unit(self, task, costs):
        # A black-box configuration, so it pays the family's one-off cost as every sampler does.
        flops = task.blackbox_setup_flops() + costs.evaluation()
        return flops, task.steps_per_evaluation(), "evaluation"
