"""Stochastic bilevel solvers (SOBA, AmIGO, F2SA) and a zero-order hypergradient.

Each iteration of a solver draws minibatches (the task's `minibatch_at` and `val_batch_at`
where it has them, else its own batches: exact oracles), updates its inner variables by the
iteration of `hobench.hypergrad.bilevel`, and moves λ along the direction it returns with the
hyper-optimizer every gradient strategy shares (Adam on the task's coordinates, then the
task's projection), so rows differ by their hypergradient estimate and its cost, not by their
outer optimiser. The papers' own outer step is plain SGD; Adam's step, a fraction of each
hyperparameter's range, is what lets one default serve tasks whose hypergradients differ by
orders of magnitude.

Cost: one iteration's FLOPs are counted once (FlopCounterMode over one iteration at the start,
at the task's batch shapes: its gradients, Hessian-vector and cross-derivative products) and
charged per iteration; inner steps count the inner-variable updates. A point is recorded every
`record_every` iterations: λ and the validation loss of the current inner iterate (not
retrained). The answer is the last λ (the zero-order search's: the best λ it evaluated),
handed to the task's final protocol like every other strategy's.

A solver whose iterates stop being finite has diverged: its cell fails with the iteration
named (lower inner_lr or outer_lr), after recording a failed point.

Defaults (tuned on seed 100, never a suite seed, on quadratic and hyper-cleaning at cost 20;
docs/bilevel.md has the runs): inner_lr (z's and v's step) is the task's `inner_lr`, 1/L of the
training loss where the task knows L (SABA: a third of it); outer_lr is the task's
`online_hyper_lr` (else `hyper_lr`) × inner_steps / 10, RTHO's displacement of λ per inner
step; AmIGO and F2SA take k = 10 inner steps per outer step and F2SA's penalty grows as
ρ_t = penalty + penalty_growth · t from 1 by 0.1 (these two chosen, not tuned); zero-order
uses M = 1 antithetic direction of σ = 0.05 of each range.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import torch

from hobench.domains import Interval
from hobench.harness.budget import Budget
from hobench.harness.recorder import Recorder
from hobench.hypergrad import unroll
from hobench.hypergrad.bilevel import (
    Bilevel,
    amigo_step,
    f2sa_step,
    flat_problem,
    saba_step,
    saba_tables,
    soba_step,
    zero_order_gradient,
)
from hobench.registry import STRATEGIES
from hobench.strategies.base import Strategy, check_first_unit_fits, priced
from hobench.strategies.gradient import hyper_optimizer
from hobench.tasks.base import GradientProblem, Task

RTHO_DELTA = 10  # RTHO's default inner steps per hyper-step
STEP = Interval(0, open_low=True)  # a step size: > 0 and finite
STEP_OR_TASK = Interval(0, open_low=True, meaning="unset takes the task's value")


class Diverged(RuntimeError):
    """A solver's iterates stopped being finite: the cell fails with this line."""


def _finite(*trees) -> bool:
    for tree in trees:
        values = tree.values() if isinstance(tree, dict) else [tree]
        if not all(bool(torch.isfinite(v).all()) for v in values):
            return False
    return True


def train_batches(problem: GradientProblem, start: int = 1) -> Iterator:
    """The solver's training minibatches t = start, start + 1, ...: `minibatch_at(t)`, else
    the task's own `batch_at`, cycling through 1..T."""
    if problem.minibatch_at is not None:
        return (problem.minibatch_at(t) for t in itertools.count(start))
    return (problem.batch_at((t - 1) % problem.steps + 1) for t in itertools.count(start))


def val_batches(problem: GradientProblem, start: int = 1) -> Iterator:
    """Validation minibatches `val_batch_at(t)` where the task has them, else None (F on the
    whole validation set)."""
    if problem.val_batch_at is not None and problem.outer_on is not None:
        return (problem.val_batch_at(t) for t in itertools.count(start))
    return itertools.repeat(None)


def bilevel_of(problem: GradientProblem) -> tuple[Bilevel, torch.Tensor]:
    """The task's J and E over flat weights, and the flat start."""
    if problem.outer_on is not None:
        outer_on = problem.outer_on
    else:
        outer_on = lambda params, hp, batch: problem.outer(params, hp)  # noqa: E731
    model, split = problem.params0(), problem.dynamics.split
    if split is None:
        return flat_problem(problem.dynamics.loss, outer_on, model)
    # A module's model: z is its parameters; its buffers (BatchNorm's running statistics), which
    # no gradient moves, are held at their initial values, as implicit differentiation holds them.
    weights, rebuild = split(model)
    flat, z0 = flat_problem(
        lambda w, hp, batch: problem.dynamics.loss(rebuild(w), hp, batch),
        lambda w, hp, batch: outer_on(rebuild(w), hp, batch),
        weights,
    )
    return Bilevel(flat.inner, flat.outer, lambda z: rebuild(flat.unravel(z))), z0


class StochasticBilevel(Strategy):
    """The loop every solver shares; a solver says how to start and how to iterate."""

    domains = {
        "inner_lr": STEP_OR_TASK,
        "outer_lr": STEP_OR_TASK,
        "record_every": Interval(1, integer=True),
    }
    inner_steps = 1  # inner-variable updates per iteration (the step budget's unit)

    def __init__(
        self, inner_lr: float | None = None, outer_lr: float | None = None, record_every: int = 10
    ) -> None:
        self.inner_lr, self.outer_lr, self.record_every = inner_lr, outer_lr, record_every

    # --- what a solver fills in -----------------------------------------------------------------
    def start(self, problem: GradientProblem, bilevel: Bilevel, z0: torch.Tensor) -> dict:
        """The solver's variables before the first iteration."""
        return {"z": z0, "v": torch.zeros_like(z0)}

    def iterate(self, variables: dict, hp, t: int, batches, vals, step: float):
        """(variables after iteration t, λ's direction)."""
        raise NotImplementedError

    # --- the shared loop ------------------------------------------------------------------------
    def step_size(self, problem: GradientProblem) -> float:
        step = self.inner_lr or problem.inner_lr
        if step is None:
            raise ValueError(f"{self.name}: the task names no inner step size; set inner_lr")
        return step

    def outer_step(self, problem: GradientProblem) -> float:
        """outer_lr, else RTHO's displacement of λ per inner step: the task's online_hyper_lr
        (else hyper_lr) per Δ = 10 inner steps, i.e. × inner_steps / 10 per iteration."""
        if self.outer_lr:
            return self.outer_lr
        return (problem.online_hyper_lr or problem.hyper_lr) * self.inner_steps / RTHO_DELTA

    def first_unit(self, task, costs):
        problem = costs.problem
        if problem is None:
            raise ValueError(f"{self.name} needs the task's gradient problem")
        if problem.dynamics.loss is None:
            raise ValueError(f"{self.name} needs the task's training loss (Dynamics.loss)")
        step = self.step_size(problem)
        bilevel, z0 = bilevel_of(problem)
        hp = problem.project(problem.hp0)
        self._bilevel = bilevel

        def one_iteration():
            variables = self.start(problem, bilevel, z0)
            self.iterate(variables, hp, 1, train_batches(problem), val_batches(problem), step)

        key = (self.name, self.inner_steps, "iteration")
        return costs.counted(key, one_iteration), self.inner_steps, f"{self.name} iteration"

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder):
        problem = task.gradient_problem()
        costs = priced(task, budget)
        check_first_unit_fits(self, task, budget, costs)
        with budget.paused():
            flops, steps, _ = self.first_unit(task, costs)
        bilevel, z0 = bilevel_of(problem)
        step = self.step_size(problem)
        hyper = hyper_optimizer(problem, self.outer_step(problem))
        variables = self.start(problem, bilevel, z0)
        batches, vals = train_batches(problem), val_batches(problem)
        self._bilevel, t = bilevel, 0
        while budget.fits(flops, steps):
            hp = hyper.values()
            t += 1
            variables, direction = self.iterate(variables, hp, t, batches, vals, step)
            budget.spend(flops, steps)
            tensors = [x for x in variables.values() if isinstance(x, torch.Tensor)]
            if not _finite(direction, *tensors):
                recorder.point(hp, float("nan"), failed=True)
                raise Diverged(
                    f"{self.name} diverged at iteration {t}: non-finite iterates; "
                    "lower inner_lr or outer_lr"
                )
            hyper.step(direction)
            if t % self.record_every == 0:
                self._record(problem, bilevel, variables, hyper.values(), recorder)
        budget.stop()
        if t == 0:
            raise RuntimeError("no iteration completed within the budget")
        if t % self.record_every:
            self._record(problem, bilevel, variables, hyper.values(), recorder)
        recorder.finish(**task.finalize(hyper.values()))

    @staticmethod
    def _record(problem, bilevel, variables, hp, recorder) -> None:
        ev = problem.evaluate(bilevel.unravel(variables["z"]), hp)
        recorder.point(hp, ev.val_loss, ev.val_acc, ev.test_acc)


@STRATEGIES.register("soba")
class SOBA(StochasticBilevel):
    """SOBA (Dagréou et al., NeurIPS 2022): a single loop keeping z (inner weights), v (the
    linear system's solution) and λ; each iteration takes one stochastic step on each:
    z on G, v on ½ vᵀ∇²_zz G v − ∇_z F · v, λ along ∂_λ F − (∂_λ ∇_z G)ᵀ v, all from the
    same (z, v). One iteration costs a gradient of F, a gradient of G and one vector-Jacobian
    product of ∇_z G (the Hessian-vector and cross-derivative products together).

    inner_lr: the step of z and v (unset: the task's inner_lr); outer_lr: Adam's step on λ
    (unset: the task's online_hyper_lr, else hyper_lr); record_every: a point every so many
    iterations."""

    def iterate(self, variables, hp, t, batches, vals, step):
        z, v, direction = soba_step(
            self._bilevel, variables["z"], variables["v"], hp, next(batches), next(vals), step, step
        )
        return {"z": z, "v": v}, direction


@STRATEGIES.register("saba")
class SABA(SOBA):
    """SABA (Dagréou et al., NeurIPS 2022): SOBA with each oracle replaced by its SAGA
    estimate (fresh value − its stored value for that minibatch + the mean of the stored
    ones), minibatches drawn uniformly from the task's fixed partition (`partition`; one
    batch, so plain SOBA, where the task has no minibatches). The memory starts at zero (no
    full pass first) and costs two weight-sized and one λ-sized vector per training
    minibatch, one of each per validation minibatch; the averaging is elementwise work, not
    counted. Parameters as SOBA's, except that an unset inner_lr takes a third of the task's
    (SAGA's step 1/(3L): at the task's own step the estimates diverge on minibatches).
    """

    def step_size(self, problem: GradientProblem) -> float:
        return self.inner_lr or super().step_size(problem) / 3

    def start(self, problem, bilevel, z0):
        self._problem = problem
        self._draws = torch.Generator().manual_seed(getattr(self, "_seed", 0))
        hp = problem.project(problem.hp0)
        return {
            "z": z0,
            "v": torch.zeros_like(z0),
            "tables": saba_tables(z0, hp, *problem.partition),
        }

    def _draw(self, count: int) -> int:
        return int(torch.randint(count, (), generator=self._draws))

    def iterate(self, variables, hp, t, batches, vals, step):
        problem, (P, P_val) = self._problem, self._problem.partition
        i, j = self._draw(P), self._draw(P_val)
        train = problem.minibatch_at(i + 1) if problem.minibatch_at else problem.batch_at(1)
        val = next(val_batches(problem, j + 1))
        tables = variables["tables"]
        z, v, direction = saba_step(
            self._bilevel, variables["z"], variables["v"], hp, (i, train), (j, val), tables, step
        )
        return {"z": z, "v": v, "tables": tables}, direction

    def run(self, task, budget, rng, recorder):
        self._seed = int(rng.integers(2**31))
        super().run(task, budget, rng, recorder)


@STRATEGIES.register("amigo")
class AmIGO(StochasticBilevel):
    """AmIGO (Arbel & Mairal, ICLR 2022): per outer step, k = `inner_steps` warm-started SGD
    steps on z (G), then k SGD steps on v for the linear system ∇²_zz G v = ∇_z F at the new
    z (warm-started too), then λ along ∂_λ F − (∂_λ ∇_z G)ᵀ v. k = 1 is SOBA with its v read
    after z's step. Parameters as SOBA's, plus inner_steps (k ≥ 1: the inner/outer ratio)."""

    domains = {**StochasticBilevel.domains, "inner_steps": Interval(1, integer=True)}

    def __init__(
        self,
        inner_steps: int = 10,
        inner_lr: float | None = None,
        outer_lr: float | None = None,
        record_every: int = 1,
    ) -> None:
        super().__init__(inner_lr, outer_lr, record_every)
        self.inner_steps = inner_steps

    def iterate(self, variables, hp, t, batches, vals, step):
        z, v, direction = amigo_step(
            self._bilevel,
            variables["z"],
            variables["v"],
            hp,
            batches,
            next(vals),
            self.inner_steps,
            step,
            step,
        )
        return {"z": z, "v": v}, direction


@STRATEGIES.register("f2sa")
class F2SA(StochasticBilevel):
    """F2SA (Kwon et al., ICML 2023), fully first-order: no Hessian or cross-derivative
    product. z tracks argmin G, y tracks argmin G + F/ρ; per outer step k = `inner_steps`
    SGD steps on each (step inner_lr), then λ along ∂_λ F(y) + ρ (∂_λ G(y) − ∂_λ G(z)), the
    gradient of the value-function penalty F(y) + ρ (G(y) − min G), whose bias falls as 1/ρ.
    The penalty grows linearly, ρ_t = penalty + penalty_growth · t. Other parameters as
    AmIGO's."""

    domains = {
        **AmIGO.domains,
        "penalty": Interval(0, open_low=True),
        "penalty_growth": Interval(0),
    }

    def __init__(
        self,
        inner_steps: int = 10,
        penalty: float = 1.0,
        penalty_growth: float = 0.1,
        inner_lr: float | None = None,
        outer_lr: float | None = None,
        record_every: int = 1,
    ) -> None:
        super().__init__(inner_lr, outer_lr, record_every)
        self.inner_steps, self.penalty, self.penalty_growth = inner_steps, penalty, penalty_growth

    def start(self, problem, bilevel, z0):
        return {"z": z0, "y": z0.clone()}

    def iterate(self, variables, hp, t, batches, vals, step):
        rho = self.penalty + self.penalty_growth * t
        z, y, direction = f2sa_step(
            self._bilevel, variables["z"], variables["y"], hp, batches, vals,
            self.inner_steps, step, rho,
        )  # fmt: skip
        return {"z": z, "y": y}, direction


@STRATEGIES.register("zero-order")
class ZeroOrder(Strategy):
    """A zero-order hypergradient (evolution strategies): per iteration, M = `directions`
    antithetic Gaussian perturbations λ ± σ·range·u of λ, each scored by a whole inner run
    (T steps from s_0 and E), give ĝ = 1/M Σ (f(λ+) − f(λ−))/(2σ) u / range; λ moves along ĝ
    with the shared Adam hyper-optimizer (outer_lr: its step, unset: the task's hyper_lr).
    Needs nothing differentiable: no training loss, no derivative of E. An iteration also
    scores λ itself (2M + 1 runs); the answer is the best λ scored. Perturbed points are
    projected onto the task's constraints before their run."""

    domains = {
        "directions": Interval(1, integer=True),
        "sigma": STEP,
        "outer_lr": STEP_OR_TASK,
    }

    def __init__(
        self,
        directions: int = 1,
        sigma: float = 0.05,
        outer_lr: float | None = None,
        compile: bool | None = None,
    ) -> None:
        """compile: the inner runs' compiled path (True), eager (False), or the suite's choice
        (None; hobench.strategies.gradient's note on `compile`)."""
        self.directions, self.sigma, self.outer_lr = directions, sigma, outer_lr
        self.compile = compile

    def first_unit(self, task, costs):
        if costs.problem is None:
            raise NotImplementedError(f"{self.name} needs the task's gradient problem")
        runs = 2 * self.directions + 1
        return runs * costs.evaluation(), runs * costs.problem.steps, "zero-order iteration"

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder):
        problem = task.gradient_problem()
        costs = priced(task, budget)
        check_first_unit_fits(self, task, budget, costs)
        flops, steps, _ = self.first_unit(task, costs)
        hyper = hyper_optimizer(problem, self.outer_lr or 0.0)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        scale = problem.ranges or {}

        def f(hp) -> float:
            hp = problem.project(hp)
            state = problem.dynamics.init(problem.params0(), hp)
            with torch.no_grad():
                args = (problem.dynamics, state, hp, problem.steps, problem.batch_at, 0)
                last = unroll(*args, compile=self.compile)[-1]
                return float(problem.outer(problem.dynamics.params(last), hp))

        best = None
        while budget.fits(flops, steps):
            hp = hyper.values()
            with torch.no_grad():
                estimate = zero_order_gradient(f, hp, self.sigma, self.directions, gen, scale)
                value = f(hp)
            budget.spend(flops, steps)
            recorder.point(hp, value)
            if not math.isfinite(value) or not _finite(estimate):
                raise Diverged(
                    f"{self.name} diverged: non-finite validation loss or estimate; "
                    "lower sigma or outer_lr"
                )
            if best is None or value < best[0]:
                best = (value, hp)
            hyper.step(estimate)
        budget.stop()
        if best is None:
            raise RuntimeError("no iteration completed within the budget")
        recorder.finish(**task.finalize(best[1]))
