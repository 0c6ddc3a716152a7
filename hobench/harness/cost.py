"""The cost currency: floating-point work, in plain-training equivalents.

A budget in seconds depends on the machine and its load; a budget in inner steps counts a
Forward-HG step over m directions as one plain step. Floating-point operations are the same on
every machine and for every run, so a cost budget makes a seeded search bit-identical.

Every unit a strategy spends is counted with `torch.utils.flop_counter.FlopCounterMode`, once per
kind and shape (on one step or one outer evaluation, never inside the timed loop), then
composed: a reverse hypergradient over T steps costs T plain steps (the forward sweep) + K
reverse steps (each recomputes its step and pulls the adjoint back) + one outer value and
gradient; an implicit hypergradient costs T plain steps + its solver's products (Hessian-vector
or vector-Jacobian products, each about a reverse step) + its setup. Costs are expressed as
multiples of one plain training run of the task at its defaults (T applications of Φ), so
"cost 20" means "as much arithmetic as 20 training runs".

What FlopCounterMode counts: matrix products (mm, addmm, bmm, baddbmm, convolutions). We add
matrix-vector and dot products (2·n·d and 2·n multiply-adds, as for mm), which the ridge task's
linear model uses. Elementwise work (activations, softmax, the optimiser's update, the Adam
hyper-step) is not counted: it is O(|s|) per step against O(n·|s|) for the products.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _mv_flops(matrix_shape, vector_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * matrix_shape[0] * matrix_shape[1]


def _addmv_flops(self_shape, matrix_shape, vector_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * matrix_shape[0] * matrix_shape[1]


def _dot_flops(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0]


EXTRA_FORMULAS = {aten.mv: _mv_flops, aten.addmv: _addmv_flops, aten.dot: _dot_flops}


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Floating-point operations of one call of `fn` (the call runs once, for real)."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


class CostModel:
    """FLOPs of the units strategies spend on one task, each counted once and reused.

    `plain_run` is the currency: T applications of Φ at the task's default hyperparameters.
    Counting needs a `GradientProblem` (every built-in task has one); a task without one builds
    the model with `CostModel.fixed(evaluation_flops)` and supports black-box strategies only.
    """

    def __init__(self, problem: Any | None, fixed: dict[str, int] | None = None) -> None:
        self.problem = problem
        self._counts: dict[Any, int] = dict(fixed or {})

    @classmethod
    def fixed(cls, evaluation_flops: int) -> CostModel:
        """A task that states its own evaluation cost: one evaluation is one plain run."""
        return cls(None, {"plain_run": int(evaluation_flops), "evaluation": int(evaluation_flops)})

    # --- counted pieces (each counted on first use) --------------------------------------------
    def _count(self, key: Any, thunk: Callable[[], Any]) -> int:
        if key not in self._counts:
            if self.problem is None:
                raise NotImplementedError(
                    f"this task states only its evaluation cost; {key!r} cannot be counted"
                )
            self._counts[key] = count_flops(thunk)
        return self._counts[key]

    def _start(self):
        problem = self.problem
        hp = problem.project(problem.hp0)
        return problem.dynamics.init(problem.params0(), hp), hp

    def step(self) -> int:
        """One plain application of Φ."""

        def run():
            state, hp = self._start()
            self.problem.dynamics.step(state, hp, self.problem.batch_at(1))

        return self._count("step", run)

    def outer(self) -> int:
        """E on the whole validation set (what a black-box evaluation is scored by)."""

        def run():
            state, hp = self._start()
            self.problem.outer(self.problem.dynamics.params(state), hp)

        return self._count("outer", run)

    def reverse_step(self) -> int:
        """One step of the backward sweep: the step recomputed at s_{t-1}, then α_t A_t, α_t B_t."""
        from hobench.hypergrad.reverse import step_vjp

        def run():
            state, hp = self._start()
            step_vjp(self.problem.dynamics, state, hp, self.problem.batch_at(1), state)

        return self._count("reverse_step", run)

    def outer_gradient(self, outer: Callable | None = None, key: str = "all") -> int:
        """E and its gradient with respect to the state and λ (reverse mode's α_T and ∂_λ E);
        `outer` (named by `key`) defaults to E on the whole validation set."""
        from hobench.hypergrad import reverse

        def run():
            state, hp = self._start()
            p = self.problem
            reverse(p.dynamics, state, hp, 0, p.batch_at, outer or p.outer, compile=False)

        return self._count(("outer_gradient", key), run)

    def forward_step(self) -> int:
        """One step of s and of Z over the m tangent directions (one per entry of λ).
        (Building Z_0 is allocation, not arithmetic: it counts 0.)"""
        from hobench.hypergrad import ForwardState

        def run():
            state, hp = self._start()
            carried = ForwardState(self.problem.dynamics, state, hp, compile=False)
            carried.advance(self.problem.batch_at(1))

        return self._count("forward_step", run)

    def forward_outer(self, outer: Callable | None = None, key: str = "all") -> int:
        """∇_s E · Z + ∂_λ E over the m directions; `outer` (named by `key`) defaults to E on
        the whole validation set."""
        from hobench.hypergrad import ForwardState

        def run():
            state, hp = self._start()
            carried = ForwardState(self.problem.dynamics, state, hp, compile=False)
            carried.hypergradient(outer or self.problem.outer)

        return self._count(("forward_outer", key), run)

    def ift_setup(self, method: str) -> int:
        """An implicit hypergradient (`hobench.hypergrad.implicit.METHODS[method]`) less its T
        steps and its solver's products: E and its gradient, the linearisation at the last
        state and the mixed term (∂_λ G)ᵀ v."""
        return self._count(("ift", method, 0), lambda: self._implicit(method, 0))

    def ift_iteration(self, method: str) -> int:
        """What one more solver product adds: a Hessian-vector (or vector-Jacobian) product,
        and CG's two dot products."""
        one = self._count(("ift", method, 1), lambda: self._implicit(method, 1))
        return one - self.ift_setup(method)

    def _implicit(self, method: str, iterations: int) -> None:
        from hobench.hypergrad.implicit import METHODS

        state, hp = self._start()
        p = self.problem
        # tol 0: CG runs every product asked for; α does not change the arithmetic.
        extra = {"cg": {"tol": 0.0}, "neumann": {"alpha": 1.0}}.get(method, {})
        args = (p.dynamics, state, hp, 0, p.batch_at, p.outer)
        METHODS[method](*args, iterations=iterations, compile=False, **extra)

    def counted(self, key: Any, thunk: Callable[[], Any]) -> int:
        """FLOPs of `thunk()`, a strategy's own unit of work at this task's shapes (one
        iteration of a stochastic bilevel solver: its gradients, Hessian-vector and
        cross-derivative products), counted once per `key`."""
        return self._count(key, thunk)

    # --- units (FLOPs) ------------------------------------------------------------------------
    @property
    def plain_run(self) -> int:
        """The currency: T applications of Φ at the task's defaults."""
        if "plain_run" in self._counts:
            return self._counts["plain_run"]
        return self.problem.steps * self.step()

    def evaluation(self) -> int:
        """A black-box evaluation: train T steps, then E on the validation set."""
        if "evaluation" in self._counts:
            return self._counts["evaluation"]
        return self.problem.steps * self.step() + self.outer()

    def reverse(
        self,
        steps: int,
        truncate: int | None = None,
        outer: Callable | None = None,
        key: str = "all",
    ) -> int:
        """Reverse-HG over `steps`: the forward sweep, K reverse steps, E and its gradient
        (`outer`, named by `key`, defaults to E on the whole validation set)."""
        backward = (truncate or steps) * self.reverse_step()
        return steps * self.step() + backward + self.outer_gradient(outer, key)

    def forward(self, steps: int) -> int:
        """Forward-HG over `steps`: s and Z carried forward, then the hypergradient."""
        return steps * self.forward_step() + self.forward_outer()

    def ift(self, steps: int, method: str, iterations: int) -> int:
        """An implicit hypergradient: T plain steps to the last state, the solver's setup and
        `iterations` products (`method` names the form and solver, as in `implicit.METHODS`)."""
        return (
            steps * self.step() + self.ift_setup(method) + iterations * self.ift_iteration(method)
        )

    def rtho_chunk(self, delta: int, outer: Callable, key: str) -> int:
        """Δ online steps carrying Z, then one hypergradient on the validation loss `outer`."""
        return delta * self.forward_step() + self.forward_outer(outer, key)
