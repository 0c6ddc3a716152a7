"""Gradient strategies: hypergradient descent (Forward-HG, Reverse-HG) and RTHO.

Repeat { train T steps from s_0 with λ; hypergradient; Adam hyper-step; project onto the
task's constraints } until the budget ends, then run the task's final protocol on the incumbent
(the λ with the lowest validation loss seen). RTHO instead trains once, carrying Z, and moves λ
every Δ steps without resetting s or Z (FAR-HO's online mode).

Cost accounting: every application of Φ is one inner step for everyone. `cost_steps` adds the
true extra cost, measured: each hypergradient's wall time divided by the time of one plain
training step timed at the start on the same machine.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from hobench.harness.budget import Budget
from hobench.harness.recorder import Recorder, summarise
from hobench.hypergrad import ForwardState, forward, reverse, unroll
from hobench.registry import STRATEGIES
from hobench.strategies.base import Strategy
from hobench.tasks.base import GradientProblem, Task


def plain_step_seconds(problem: GradientProblem, hp, probe_steps: int = 5) -> float:
    """Seconds per plain training step on this machine (a short timed unroll, after a warm-up)."""
    state = problem.dynamics.init(problem.params0(), hp)
    unroll(problem.dynamics, state, hp, 1, problem.batch_at, 0)
    started = time.perf_counter()
    unroll(problem.dynamics, state, hp, probe_steps, problem.batch_at, 0)
    return (time.perf_counter() - started) / probe_steps


def _finite(hg) -> bool:
    return math.isfinite(float(hg.value)) and all(
        bool(torch.isfinite(g).all()) for g in hg.grad.values()
    )


class HyperOptimizer:
    """Adam on the hyperparameters followed by the task's projection."""

    def __init__(self, hp: dict[str, torch.Tensor], lr: float, project) -> None:
        self.hp = {k: v.detach().clone().requires_grad_() for k, v in hp.items()}
        self.adam = torch.optim.Adam(self.hp.values(), lr=lr)
        self.project = project

    def step(self, grad: dict[str, torch.Tensor]) -> None:
        for name, tensor in self.hp.items():
            tensor.grad = grad[name].detach().clone()
        self.adam.step()
        with torch.no_grad():
            for name, value in self.project({k: v.detach() for k, v in self.hp.items()}).items():
                self.hp[name].copy_(value)

    def values(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.hp.items()}


class HypergradientDescent(Strategy):
    mode = "reverse"

    def __init__(
        self,
        hyper_lr: float = 0.0,
        steps: int = 0,
        truncate: int = 0,
        warm_start: bool = False,
        start: str = "default",
    ) -> None:
        """hyper_lr and steps (T) of 0 take the task's values; truncate (reverse only) > 0
        differentiates the last K steps only; warm_start carries the weights across
        hyper-iterations instead of restarting from s_0."""
        self.hyper_lr, self.steps, self.truncate = hyper_lr, steps, truncate
        self.warm_start, self.start = warm_start, start

    def hypergradient(self, problem, state, hp, T):
        args = (problem.dynamics, state, hp, T, problem.batch_at, problem.outer)
        if self.mode == "forward":
            return forward(*args)
        return reverse(*args, truncate=self.truncate or None)

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder):
        problem = task.gradient_problem(self.start)
        T = self.steps or problem.steps
        if budget.steps is not None and budget.steps < T:
            raise ValueError(f"budget of {budget.steps} steps is below one hyper-iteration ({T})")
        hyper = HyperOptimizer(
            problem.project(problem.hp0), self.hyper_lr or problem.hyper_lr, problem.project
        )
        step_s = plain_step_seconds(problem, hyper.values())
        params = problem.params0()
        best = None
        while budget.fits(T):
            hp = hyper.values()
            started = time.perf_counter()
            hg = self.hypergradient(problem, problem.dynamics.init(params, hp), hp, T)
            budget.spend(T, cost=(time.perf_counter() - started) / step_s)
            if not _finite(hg):
                recorder.point(hp, float("nan"), failed=True)
                break
            trained = problem.dynamics.params(hg.final_state)
            ev = problem.evaluate(trained, hp)
            recorder.point(hp, ev.val_loss, ev.val_acc, ev.test_acc)
            if best is None or ev.val_loss < best[0]:
                best = (ev.val_loss, hp)
            if self.warm_start:
                params = trained
            hyper.step(hg.grad)
        budget.stop()
        if best is None:
            raise RuntimeError("no hyper-iteration completed within the budget")
        recorder.finish(**task.finalize(best[1]))


@STRATEGIES.register("reverse-hg")
class ReverseHG(HypergradientDescent):
    mode = "reverse"


@STRATEGIES.register("forward-hg")
class ForwardHG(HypergradientDescent):
    mode = "forward"


@STRATEGIES.register("rtho")
class RTHO(Strategy):
    """Real-time HO: one training run; every Δ steps a hyper-step on a validation minibatch,
    using the carried Z_t; neither the weights nor Z are ever reset. Starts from the task's
    `rtho` hyperparameters (for auxtarget: Vanilla with ρ = 1.6). A task without validation
    minibatches is validated on its whole validation set at every hyper-step."""

    start = "rtho"

    def __init__(self, delta: int = 10, hyper_lr: float = 0.0, record_every: int = 5) -> None:
        self.delta, self.hyper_lr, self.record_every = delta, hyper_lr, record_every

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder):
        problem = task.gradient_problem(self.start)
        hyper = HyperOptimizer(
            problem.project(problem.hp0), self.hyper_lr or problem.hyper_lr, problem.project
        )
        step_s = plain_step_seconds(problem, hyper.values())
        online = ForwardState(
            problem.dynamics,
            problem.dynamics.init(problem.params0(), hyper.values()),
            hyper.values(),
        )
        k = 0
        while budget.fits(self.delta):
            started = time.perf_counter()
            for _ in range(self.delta):
                online.advance(problem.batch_at(online.t + 1))
            k += 1
            hg = online.hypergradient(self._validation_loss(problem, k))
            budget.spend(self.delta, cost=(time.perf_counter() - started) / step_s)
            if not _finite(hg):
                recorder.point(online.hp, float("nan"), failed=True)
                break
            hyper.step(hg.grad)
            online.hp = hyper.values()
            if k % self.record_every == 0 or not budget.fits(self.delta):
                ev = problem.evaluate(problem.dynamics.params(online.state), online.hp)
                recorder.point(online.hp, ev.val_loss, ev.val_acc, ev.test_acc)
        budget.stop()
        if k == 0:
            raise RuntimeError("the budget ended before the first hyper-step")
        # RTHO's result is the network of its single run, not a retrain.
        ev = problem.evaluate(problem.dynamics.params(online.state), online.hp)
        recorder.finish(
            val_loss=ev.val_loss,
            val_acc=ev.val_acc,
            test_acc=ev.test_acc,
            config={k: summarise(v) for k, v in online.hp.items()},
        )

    @staticmethod
    def _validation_loss(problem: GradientProblem, k: int):
        """E on the k-th validation minibatch, or on the whole validation set."""
        if problem.val_batch_at is None or problem.outer_on is None:
            return problem.outer
        batch = problem.val_batch_at(k)
        return lambda params, hp: problem.outer_on(params, hp, batch)


@STRATEGIES.register("rtho-nt")
class RTHONullTeacher(RTHO):
    """RTHO from the "null teacher": η = μ = ρ = 0."""

    start = "null"
