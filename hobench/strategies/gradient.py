"""Gradient strategies: hypergradient descent (Forward-HG, Reverse-HG, truncated) and RTHO.

Repeat { train T steps from s_0 with λ; hypergradient; Adam hyper-step; project onto the
task's constraints } until the budget ends, then run the task's final protocol on the incumbent
(the λ with the lowest validation loss seen): retrain T steps from s_0 at that λ, as every
black-box strategy's answer is retrained. RTHO instead trains once, for exactly the task's T
steps, carrying Z and moving λ every Δ steps without resetting s or Z (FAR-HO's online mode);
its answer is the λ schedule, replayed from s_0 by the final protocol.

Cost accounting: each unit's FLOPs are counted once (see `hobench.harness.cost`): a reverse
hypergradient pays its forward sweep, the backward sweep that recomputes every step (the last K
when truncated), and E with its gradient; forward mode pays for its m tangents; RTHO pays per
chunk of Δ steps, as does its online truncated variant.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hobench.domains import Choice, Interval, ParamError
from hobench.harness.budget import Budget
from hobench.harness.failures import all_diverged
from hobench.harness.recorder import Recorder, summarise
from hobench.hypergrad import ForwardState, forward, reverse, unroll
from hobench.registry import STRATEGIES
from hobench.strategies.base import Strategy, check_first_unit_fits, priced
from hobench.tasks.base import GradientProblem, Task


def _finite(hg) -> bool:
    return math.isfinite(float(hg.value)) and all(
        bool(torch.isfinite(g).all()) for g in hg.grad.values()
    )


class HyperOptimizer:
    """Adam on the hyperparameters followed by the task's projection. Each hyperparameter has
    its own step size, `lr` × the width of its range, so a rate, a momentum and a loss weight
    all move by a similar fraction of their range per hyper-step."""

    def __init__(
        self, hp: dict[str, torch.Tensor], lr: float, project, ranges: dict[str, float] | None
    ) -> None:
        self.hp = {k: v.detach().clone().requires_grad_() for k, v in hp.items()}
        ranges = ranges or {}
        self.adam = torch.optim.Adam(
            [{"params": [v], "lr": lr * ranges.get(k, 1.0)} for k, v in self.hp.items()]
        )
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


# `compile` (every gradient strategy's parameter; None, the default, takes the suite's top-level
# `compile`, true unless the suite says false) runs the engine's compiled path
# (hobench.hypergrad.compiled): each hyper-iteration is faster; each cell is a fresh process
# that loads the compiled code from the machine's compile cache (hobench.harness.compile_cache),
# which the runner fills before the first cell of each task and strategy, off every cell's
# clock. The numbers differ from the eager path's in the last bits. HOBENCH_COMPILE=0 forces
# eager regardless.

# The starts every task's gradient problem knows (Task.gradient_problem).
STARTS = ("default", "rtho", "null")


class HypergradientDescent(Strategy):
    mode = "reverse"
    domains = {
        "hyper_lr": Interval(0, meaning="0 takes the task's value"),
        "steps": Interval(0, integer=True, meaning="0 takes the task's T"),
        "truncate": Interval(0, integer=True, meaning="0 differentiates every step"),
        "start": Choice(STARTS),
    }

    def __init__(
        self,
        hyper_lr: float = 0.0,
        steps: int = 0,
        truncate: int = 0,
        warm_start: bool = False,
        start: str = "default",
        compile: bool | None = None,
    ) -> None:
        """hyper_lr and steps (T) of 0 take the task's values; truncate (reverse only) > 0
        differentiates the last K steps only; warm_start carries the weights across
        hyper-iterations instead of restarting from s_0; compile: the engine's compiled
        path (True), eager (False), or the suite's choice (None; see the note above)."""
        self.hyper_lr, self.steps, self.truncate = hyper_lr, steps, truncate
        self.warm_start, self.start, self.compile = warm_start, start, compile

    def hypergradient(self, problem, state, hp, T):
        args = (problem.dynamics, state, hp, T, problem.batch_at, problem.outer)
        if self.mode == "forward":
            return forward(*args, compile=self.compile)
        return reverse(*args, truncate=self.truncate or None, compile=self.compile)

    def first_unit(self, task, costs):
        if costs.problem is None:
            raise NotImplementedError(f"{self.name} needs the task's gradient problem")
        T = self.steps or costs.problem.steps
        if self.truncate and not 1 <= self.truncate <= T:
            raise ValueError(
                f"truncate must be in 1..{T} (the hyper-iteration's T), got {self.truncate}"
            )
        if self.mode == "forward":
            return costs.forward(T), T, "hyper-iteration"
        return costs.reverse(T, self.truncate or None), T, "hyper-iteration"

    def spent(self, costs, T: int, hg, unit: int) -> int:
        """FLOPs a finished hyper-iteration spent: the unit (a method that may stop early, such
        as CG, says what it used)."""
        return unit

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder):
        problem = task.gradient_problem(self.start)
        costs = priced(task, budget)
        check_first_unit_fits(self, task, budget, costs)
        unit, T, _ = self.first_unit(task, costs)
        hyper = hyper_optimizer(problem, self.hyper_lr)
        params = problem.params0()
        best = None
        while budget.fits(unit, T):
            hp = hyper.values()
            hg = self.hypergradient(problem, problem.dynamics.init(params, hp), hp, T)
            budget.spend(self.spent(costs, T, hg, unit), T)
            if not _finite(hg):
                recorder.point(hp, float("nan"), failed=True)
                break
            trained = problem.dynamics.params(hg.final_state)
            ev = problem.evaluate(trained, hp)
            recorder.point(hp, ev.val_loss, ev.val_acc, ev.test_acc)
            if math.isfinite(ev.val_loss) and (best is None or ev.val_loss < best[0]):
                best = (ev.val_loss, hp)
            if self.warm_start:
                params = trained
            hyper.step(hg.grad)
        budget.stop()
        if best is None:
            all_diverged(recorder.points, "hyper-iteration", "non-finite hypergradient or loss")
            raise RuntimeError("no hyper-iteration completed within the budget")
        recorder.finish(**task.finalize(best[1]))


def hyper_optimizer(problem: GradientProblem, hyper_lr: float) -> HyperOptimizer:
    """Adam from the problem's projected start; `hyper_lr` 0 takes the task's tuned value."""
    return HyperOptimizer(
        problem.project(problem.hp0),
        hyper_lr or problem.hyper_lr,
        problem.project,
        problem.ranges,
    )


@STRATEGIES.register("reverse-hg")
class ReverseHG(HypergradientDescent):
    """Reverse-HG (paper section 3.1): hypergradient descent with the exact hypergradient of the
    validation loss after T training steps, by reverse mode over the stored trajectory; time
    independent of the number of hyperparameters, memory of T states.

    Each hyper-iteration: train T steps, compute the hypergradient, take an Adam hyper-step, project
    onto the feasible set; optionally truncated (`truncate`) and warm-started
    (`warm_start`).
    """

    mode = "reverse"


@STRATEGIES.register("truncated-hg")
class TruncatedHG(ReverseHG):
    """Truncated Reverse-HG (FAR-HO's TRHO): hypergradient descent back-propagating through
    only the last K = `truncate` of the T training steps: K backward steps instead of T, and
    K + 1 states stored, at the price of a bias towards short horizons (what λ did before the
    last K steps is not seen: see benchmarks/horizon_bias.py)."""

    domains = {**HypergradientDescent.domains, "truncate": Interval(1, integer=True)}

    def __init__(
        self,
        hyper_lr: float = 0.0,
        steps: int = 0,
        truncate: int = 10,
        warm_start: bool = False,
        start: str = "default",
        compile: bool | None = None,
    ) -> None:
        """truncate: K, the steps differentiated through (1..T)."""
        super().__init__(hyper_lr, steps, truncate, warm_start, start, compile)


@STRATEGIES.register("forward-hg")
class ForwardHG(HypergradientDescent):
    """Forward-HG (paper section 3.2): hypergradient descent with the same hypergradient as
    Reverse-HG, by forward mode (carrying ds/dλ along training); no trajectory stored, time
    growing with the number of hyperparameters.

    The same loop as reverse-hg (train T steps, hypergradient, Adam hyper-step, project) with the
    forward-mode hypergradient.
    """

    mode = "forward"


@STRATEGIES.register("rtho")
class RTHO(Strategy):
    """Real-time HO: one training run of exactly the task's T steps; every Δ steps a hyper-step
    on a validation minibatch, using the carried Z_t; neither the weights nor Z are ever reset.
    Starts from the task's `rtho` hyperparameters (for auxtarget: Vanilla with ρ = 1.6). A task
    without validation minibatches is validated on its whole validation set at every hyper-step.

    Its answer is the λ schedule (λ held after its last hyper-step): the final protocol replays
    it from s_0 for T plain steps, so its model trained exactly as long as every other
    strategy's. Budget that one run does not need is reported (cost spent < cost budget), not
    spent; a budget too small for the whole run ends it early, and the replay holds the last λ.

    The hyper-steps are Adam steps, one after every Δ steps but the last.
    """

    start = "rtho"
    domains = {
        "delta": Interval(1, integer=True),
        "hyper_lr": Interval(0, meaning="0 takes the task's value"),
        "record_every": Interval(1, integer=True),
    }

    def __init__(
        self,
        delta: int = 10,
        hyper_lr: float = 0.0,
        record_every: int = 5,
        compile: bool | None = None,
    ) -> None:
        """compile: the engine's compiled path (True), eager (False), or the suite's choice
        (None; see the note on `compile` above)."""
        self.delta, self.hyper_lr, self.record_every = delta, hyper_lr, record_every
        self.compile = compile

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder):
        problem = task.gradient_problem(self.start)
        T = problem.steps
        costs = priced(task, budget)
        check_first_unit_fits(self, task, budget, costs)

        def chunk_flops(k: int, length: int, hyper_step: bool) -> int:
            outer, key = self._validation_loss(problem, k)
            with budget.paused():
                if not hyper_step:
                    return length * costs.forward_step()
                return costs.rtho_chunk(length, outer, key)

        hyper = hyper_optimizer(problem, self.hyper_lr or problem.online_hyper_lr)
        schedule = [hyper.values()]  # λ of chunk 0, 1, ...: the answer
        online = ForwardState(
            problem.dynamics,
            problem.dynamics.init(problem.params0(), schedule[0]),
            schedule[0],
            compile=self.compile,
        )
        k = 0
        while online.t < T:
            length = min(self.delta, T - online.t)
            last = online.t + length == T  # no hyper-step after it: its λ would train no step
            flops = chunk_flops(k + 1, length, hyper_step=not last)
            if not budget.fits(flops, length):
                break
            for _ in range(length):
                online.advance(problem.batch_at(online.t + 1))
            k += 1
            if not last:
                hg = online.hypergradient(self._validation_loss(problem, k)[0])
            budget.spend(flops, length)
            if not last:
                if not _finite(hg):
                    recorder.point(online.hp, float("nan"), failed=True)
                    break
                hyper.step(hg.grad)
                online.hp = hyper.values()
                schedule.append(online.hp)
            if k % self.record_every == 0 or last:
                ev = problem.evaluate(problem.dynamics.params(online.state), online.hp)
                recorder.point(online.hp, ev.val_loss, ev.val_acc, ev.test_acc)
        budget.stop()
        self._finish(task, recorder, schedule, k, online.t, T)

    def _finish(self, task, recorder, schedule, chunks: int, trained: int, T: int) -> None:
        """The final protocol on the λ schedule (λ of chunk 0, 1, ...), held after its end."""
        if chunks == 0:
            raise RuntimeError("the budget ended before the first chunk")

        def hp_at(t: int) -> dict[str, torch.Tensor]:
            return schedule[min((t - 1) // self.delta, len(schedule) - 1)]

        recorder.finish(
            **task.finalize_schedule(hp_at),
            config={name: summarise(v) for name, v in hp_at(T).items()},
            online_steps=trained,
        )

    def first_unit(self, task, costs):
        problem = costs.problem
        if problem is None:
            raise NotImplementedError("RTHO needs the task's gradient problem")
        length = min(self.delta, problem.steps)
        return costs.rtho_chunk(length, *self._validation_loss(problem, 1)), length, "RTHO chunk"

    @staticmethod
    def _validation_loss(problem: GradientProblem, k: int):
        """(E on the k-th validation minibatch, or on the whole validation set; a key naming
        its shape for the cost model)."""
        if problem.val_batch_at is None or problem.outer_on is None:
            return problem.outer, "all"
        batch = problem.val_batch_at(k)
        return (lambda params, hp: problem.outer_on(params, hp, batch)), "minibatch"


@STRATEGIES.register("truncated-online")
class OnlineTruncatedHG(RTHO):
    """Online truncated Reverse-HG: RTHO's single run of the task's T steps with a hyper-step
    every Δ steps, its hypergradient back-propagated through the last K = `truncate` ≤ Δ steps
    of the chunk (their states stored) instead of carried forward in Z: a chunk costs Δ steps
    forward and K back whatever the number of hyperparameters, and λ's effect beyond K steps
    back is not seen (short-horizon bias). Starts, is answered and is replayed as RTHO."""

    domains = {**RTHO.domains, "truncate": Interval(1, integer=True)}

    @classmethod
    def check_params(cls, params: dict) -> None:
        if params["truncate"] > params["delta"]:
            raise ParamError(
                "truncate",
                f"{params['truncate']} > delta = {params['delta']}",
                "use truncate <= delta (λ changes every delta steps)",
            )

    def __init__(
        self,
        delta: int = 10,
        truncate: int = 5,
        hyper_lr: float = 0.0,
        record_every: int = 5,
        compile: bool | None = None,
    ) -> None:
        self.check_params({"delta": delta, "truncate": truncate})
        super().__init__(delta, hyper_lr, record_every, compile)
        self.truncate = truncate

    def _chunk_flops(self, costs, problem, k: int, length: int, hyper_step: bool) -> int:
        if not hyper_step:
            return length * costs.step()
        outer, key = self._validation_loss(problem, k)
        return costs.reverse(length, min(self.truncate, length), outer, key)

    def run(self, task: Task, budget: Budget, rng: np.random.Generator, recorder: Recorder):
        problem = task.gradient_problem(self.start)
        dynamics, T = problem.dynamics, problem.steps
        costs = priced(task, budget)
        check_first_unit_fits(self, task, budget, costs)
        hyper = hyper_optimizer(problem, self.hyper_lr or problem.online_hyper_lr)
        schedule = [hyper.values()]  # λ of chunk 0, 1, ...: the answer
        state, t, k = dynamics.init(problem.params0(), schedule[0]), 0, 0
        while t < T:
            length = min(self.delta, T - t)
            last = t + length == T  # no hyper-step after it: its λ would train no step
            with budget.paused():
                flops = self._chunk_flops(costs, problem, k + 1, length, hyper_step=not last)
            if not budget.fits(flops, length):
                break
            hp = schedule[-1]
            chunk_batches = lambda i, t0=t: problem.batch_at(t0 + i)  # noqa: E731
            if last:
                state = unroll(dynamics, state, hp, length, chunk_batches, 0, self.compile)[-1]
            else:
                outer = self._validation_loss(problem, k + 1)[0]
                K = min(self.truncate, length)
                args = (dynamics, state, hp, length, chunk_batches, outer)
                hg = reverse(*args, truncate=K, compile=self.compile)
                state = hg.final_state
            t, k = t + length, k + 1
            budget.spend(flops, length)
            if not last:
                if not _finite(hg):
                    recorder.point(hp, float("nan"), failed=True)
                    break
                hyper.step(hg.grad)
                schedule.append(hyper.values())
            if k % self.record_every == 0 or last:
                ev = problem.evaluate(dynamics.params(state), schedule[-1])
                recorder.point(schedule[-1], ev.val_loss, ev.val_acc, ev.test_acc)
        budget.stop()
        self._finish(task, recorder, schedule, k, t, T)

    def first_unit(self, task, costs):
        problem = costs.problem
        if problem is None:
            raise NotImplementedError(f"{self.name} needs the task's gradient problem")
        length = min(self.delta, problem.steps)
        hyper_step = length < problem.steps
        flops = self._chunk_flops(costs, problem, 1, length, hyper_step)
        return flops, length, "online chunk"


@STRATEGIES.register("rtho-nt")
class RTHONullTeacher(RTHO):
    """RTHO from the "null teacher": η = μ = ρ = 0.

    On auxtarget μ = ρ = 0 and η at the floor of its range (it moves log η); on ridge λ at its floor
    (no regularisation).
    """

    start = "null"
