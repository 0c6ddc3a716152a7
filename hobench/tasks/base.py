"""What a task is: data + model + inner loss J + outer loss E + hyperparameter space.

A task never knows which strategy drives it. Black-box strategies see `space()` and
`evaluate(config)`; gradient strategies see `gradient_problem()` and hand the tuned values to
`finalize(hp)`; both end with the same metrics, so their rows are comparable.

A task describes its black-box training run once, as a `Training`; `evaluate` runs it to the
end, `evaluations` scores it at intermediate steps (multi-fidelity strategies stop it there),
and `evaluate_schedule` runs it with a configuration that changes step by step (an online
strategy's answer, replayed). All three are the same loop, so they agree bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from hobench.harness.cost import CostModel
from hobench.hypergrad.dynamics import Dynamics


@dataclass(frozen=True)
class HyperParam:
    """One scalar hyperparameter a black-box strategy can search."""

    name: str
    low: float
    high: float
    default: float
    log: bool = False
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.low <= self.default <= self.high:
            raise ValueError(
                f"{self.name}: default {self.default} outside [{self.low}, {self.high}]"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"{self.name}: a log-scale range needs low > 0")


@dataclass
class Evaluation:
    """Outcome of training once with a configuration. `val_loss` is what strategies minimise."""

    val_loss: float
    val_acc: float | None = None
    test_acc: float | None = None
    steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return not math.isfinite(self.val_loss)


@dataclass(frozen=True)
class Training:
    """A black-box evaluation's training run, described so the harness can run it step by step.

    From `params0()`, `steps` (T) applications of `dynamics` with the hyperparameters
    `hp(config)` (the tensors the dynamics and the loss read), batch t = `batch_at(t)` for
    t = 1..T; `score(params)` gives the metrics of the trained weights. `loss` is the training
    loss J(params, hp, batch) the dynamics descend, for strategies that need its raw gradient
    (hd-lr); None where a task does not expose it.
    """

    dynamics: Dynamics
    params0: Callable[[], Any]
    hp: Callable[[dict[str, float]], dict[str, torch.Tensor]]
    steps: int
    batch_at: Callable[[int], Any]
    score: Callable[[Any], Evaluation]
    loss: Callable[[Any, dict[str, torch.Tensor], Any], torch.Tensor] | None = None


@dataclass
class GradientProblem:
    """The differentiable inner problem a gradient strategy drives.

    `params0()` gives fresh initial weights; `hp0` the starting hyperparameters (tensors, possibly
    vectors); `batch_at(t)` the training batch of step t = 1, 2, ... (replayed identically on the
    way back); `outer(params, hp)` the validation loss E; `project(hp)` maps hyperparameters back
    onto their constraint set after a hyper-step; `evaluate(params, hp)` reports metrics of
    trained weights. `steps` is T, the inner steps of one training run: every hyper-iteration
    and the final protocol train this long, and RTHO's single online run too.

    Each hyperparameter moves on the scale it lives on (a rate as its logarithm) and the
    hyper-optimizer's step is sized per hyperparameter: Adam's step (about its learning rate
    per iteration) is `hyper_lr` × `ranges[name]`, the width of that hyperparameter's range in
    the tuned coordinate (1 where none is given). RTHO, which takes a hyper-step every Δ inner
    steps instead of one per training run, uses `online_hyper_lr` where the task sets it.

    The stochastic bilevel solvers (hobench.strategies.bilevel) read two more: `inner_lr`, the
    step size of plain SGD on the training loss `dynamics.loss` (None: the task names none,
    and the solver's own must be set), and `minibatch_at(t)`, their t-th training minibatch
    (t = 1, 2, ... without end; None: they use `batch_at`, cycling through 1..T); and, as
    RTHO, `val_batch_at`/`outer_on` for validation minibatches. SABA also reads `partition`:
    (P, P'), the training and validation minibatches of one epoch; minibatches 1..P (and
    1..P') must then cover their set once, a fixed partition it samples from.
    """

    dynamics: Dynamics
    params0: Callable[[], Any]
    hp0: dict[str, torch.Tensor]
    steps: int
    batch_at: Callable[[int], Any]
    outer: Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]
    project: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    evaluate: Callable[[Any, dict[str, torch.Tensor]], Evaluation]
    hyper_lr: float = 0.01
    ranges: dict[str, float] | None = None
    online_hyper_lr: float | None = None  # RTHO's, which takes many more hyper-steps
    val_batch_at: Callable[[int], Any] | None = None
    outer_on: Callable[[Any, dict[str, torch.Tensor], Any], torch.Tensor] | None = None
    inner_lr: float | None = None
    minibatch_at: Callable[[int], Any] | None = None
    partition: tuple[int, int] = (1, 1)


class Task:
    """Base class of tasks; subclasses fill in the methods below."""

    name: str = "task"
    # The domain of each suite parameter (hobench.domains), checked before any cell runs.
    domains: dict = {}

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Checks that involve several parameters; raise hobench.domains.ParamError."""

    # Whether the final protocol is plain training of T steps at the answer (it is not for
    # hyper-cleaning, which retrains on a cleaned set): reference rows of plain training need it.
    final_protocol_is_plain_training: bool = True
    # The hyperparameter of `space()` that is the inner optimiser's step size, where one is
    # searched (hd-lr adapts it during training and refuses tasks without one).
    learning_rate: str | None = None

    def space(self) -> list[HyperParam]:
        """The low-dimensional space black-box strategies search."""
        raise NotImplementedError

    def default_config(self) -> dict[str, float]:
        return {p.name: p.default for p in self.space()}

    def steps_per_evaluation(self) -> int:
        """Inner steps one call of `evaluate` spends (charged against a step budget)."""
        raise NotImplementedError

    def training(self) -> Training:
        """The black-box training run (see `Training`). A task that only overrides `evaluate`
        cannot be scored during training, so multi-fidelity strategies and hd-lr refuse it."""
        raise NotImplementedError

    def evaluate(self, config: dict[str, float]) -> Evaluation:
        """Train from scratch with `config`; report validation and test metrics."""
        return next(self.evaluations(config, [self.steps_per_evaluation()]))[1]

    def evaluate_population(self, configs: Sequence[dict[str, float]]) -> list[Evaluation]:
        """`[self.evaluate(c) for c in configs]`, the runs trained together as one vmapped
        computation where the task describes a `Training` (hobench.tasks.population): equal to
        rounding, and a diverging configuration fails alone."""
        from hobench.tasks.population import evaluate_population

        return evaluate_population(self, configs)

    def evaluations(
        self, config: dict[str, float], at: Sequence[int]
    ) -> Iterator[tuple[int, Evaluation]]:
        """Train once from scratch with `config`, yielding (t, metrics) after each step t of
        `at` (increasing, the last at most T). Training advances only when the next item is
        asked for: a strategy that stops iterating stops the run there (multi-fidelity
        pruning), and at t = T the metrics are those of `evaluate(config)`."""
        run = self.training()
        hp = run.hp(config)  # built once: a configuration may be costly to turn into tensors
        return self._run(run, lambda t: hp, at)

    def evaluate_schedule(self, config_at: Callable[[int], dict[str, float]]) -> Evaluation:
        """T steps from s_0, step t with the configuration `config_at(t)`, then scored."""
        run = self.training()
        return next(self._run(run, lambda t: run.hp(config_at(t)), [run.steps]))[1]

    @staticmethod
    def _run(run: Training, hp_at, at: Sequence[int]) -> Iterator[tuple[int, Evaluation]]:
        state, t = run.dynamics.init(run.params0(), hp_at(1)), 0
        for stop in at:
            if not t < stop <= run.steps:
                raise ValueError(f"evaluation steps must increase within 1..{run.steps}: {at}")
            with torch.no_grad():  # not across the yield: the caller's grad mode is its own
                while t < stop:
                    t += 1
                    state = run.dynamics.step(state, hp_at(t), run.batch_at(t))
            yield t, run.score(run.dynamics.params(state))

    def gradient_problem(self, start: str = "default") -> GradientProblem:
        """The inner problem for gradient strategies; `start` names the initial hyperparameters."""
        raise NotImplementedError

    def finalize(self, hp: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Final protocol for hyperparameters found by a gradient strategy; returns metrics."""
        raise NotImplementedError

    def finalize_schedule(self, hp_at: Callable[[int], dict[str, torch.Tensor]]) -> dict[str, Any]:
        """Final protocol for a λ schedule (RTHO's answer): the task's T plain steps from s_0,
        step t with λ = hp_at(t); then the same metrics every strategy's model is scored by."""
        problem = self.gradient_problem()
        dynamics = problem.dynamics
        state = dynamics.init(problem.params0(), hp_at(1))
        with torch.no_grad():
            for t in range(1, problem.steps + 1):
                state = dynamics.step(state, hp_at(t), problem.batch_at(t))
        ev = problem.evaluate(dynamics.params(state), hp_at(problem.steps))
        return {"val_loss": ev.val_loss, "val_acc": ev.val_acc, "test_acc": ev.test_acc, **ev.extra}

    def cost_model(self) -> CostModel:
        """FLOP counts of the units strategies spend here (counted once per task instance).

        Built from the gradient problem; a task without one overrides this with
        `CostModel.fixed(flops of one evaluation)`.
        """
        if not hasattr(self, "_cost_model"):
            self._cost_model = CostModel(self.gradient_problem())
        return self._cost_model

    def blackbox_setup_flops(self) -> int:
        """FLOPs black-box strategies spend once before their first evaluation (0 by default)."""
        return 0

    def finalize_config(self, config: dict[str, float]) -> dict[str, Any]:
        """Final metrics for a black-box strategy's best configuration."""
        ev = self.evaluate(config)
        return {"val_loss": ev.val_loss, "val_acc": ev.val_acc, "test_acc": ev.test_acc, **ev.extra}

    def finalize_config_schedule(self, config_at: Callable[[int], dict[str, float]]) -> dict:
        """Final metrics for a configuration schedule (an online strategy's answer, e.g.
        hd-lr's learning rates): replayed from s_0 for the task's T steps, then scored like
        every other model. A task whose final protocol is not plain training overrides it."""
        if not self.final_protocol_is_plain_training:
            raise NotImplementedError(f"task {self.name!r} has no final protocol for a schedule")
        ev = self.evaluate_schedule(config_at)
        return {"val_loss": ev.val_loss, "val_acc": ev.val_acc, "test_acc": ev.test_acc, **ev.extra}

    def references(self) -> dict[str, dict[str, float]]:
        """Named reference rows (e.g. hyper-cleaning's Oracle and Baseline); none by default."""
        return {}

    def prepare(self) -> None:
        """Compute what the final protocol of every strategy shares (e.g. reference rows), in
        the cell's setup: off the budget and the clock. Nothing by default."""

    def test_size(self) -> int | None:
        """Examples in the test set behind `test_acc` (for its binomial standard error)."""
        test = getattr(self, "test", None)
        return len(test[1]) if test is not None else None

    def regret(self, val_loss: float) -> float | None:
        """f(λ) − f(λ*) where the optimum is known in closed form, else None."""
        return None
