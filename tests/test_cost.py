"""The cost currency: FLOPs counted once per unit and composed, equal to counting the whole."""

from __future__ import annotations

import time

import pytest
import torch

from hobench.harness.budget import Budget, BudgetError
from hobench.harness.cost import CostModel, count_flops
from hobench.hypergrad import ForwardState, forward, ift_cg, ift_fixed_point, ift_neumann, reverse
from hobench.registry import TASKS

SMALL = {
    "ridge": dict(groups=2, steps=7, l2_high=3.0),
    "hypercleaning": dict(
        n_train=60, n_val=40, n_test=40, n_corrupt=30, radius=30.0, steps=7, final_steps=20
    ),
    "auxtarget": dict(
        n_train=100,
        n_val=60,
        n_test=40,
        depth=1,
        width=8,
        batch_size=20,
        steps=7,
        val_batch_size=30,
    ),
}


def problem_of(kind):
    task = TASKS.create(kind, seed=0, **SMALL[kind])
    problem = task.gradient_problem()
    hp = problem.project(problem.hp0)
    s0 = problem.dynamics.init(problem.params0(), hp)
    return task, problem, hp, s0


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_a_reverse_hypergradient_costs_T_steps_forward_T_back_and_the_outer(kind):
    task, p, hp, s0 = problem_of(kind)
    costs = task.cost_model()
    T = p.steps
    counted = count_flops(reverse, p.dynamics, s0, hp, T, p.batch_at, p.outer)
    assert counted == T * costs.step() + T * costs.reverse_step() + costs.outer_gradient()
    assert counted == costs.reverse(T)
    truncated = count_flops(reverse, p.dynamics, s0, hp, T, p.batch_at, p.outer, truncate=3)
    assert truncated == costs.reverse(T, truncate=3)
    assert costs.step() > 0 and costs.reverse_step() > costs.step()  # it recomputes the step


@pytest.mark.parametrize("kind", ["ridge", "hypercleaning"])
def test_an_implicit_hypergradient_costs_T_steps_its_setup_and_its_products(kind):
    task, p, hp, s0 = problem_of(kind)
    costs = task.cost_model()
    args = (p.dynamics, s0, hp, p.steps, p.batch_at, p.outer)
    calls = {
        "cg": lambda: ift_cg(*args, iterations=3, tol=0.0),
        "neumann": lambda: ift_neumann(*args, alpha=0.1, iterations=3),
        "fixed-point": lambda: ift_fixed_point(*args, iterations=3),
    }
    for method, call in calls.items():
        assert count_flops(call) == costs.ift(p.steps, method, 3), method
        # The linearisation is built once: a product costs less than a reverse step, which
        # recomputes its step first.
        assert 0 < costs.ift_iteration(method) < costs.reverse_step()


@pytest.mark.parametrize("kind", ["ridge", "auxtarget"])
def test_forward_and_rtho_units_equal_the_counted_runs(kind):
    task, p, hp, s0 = problem_of(kind)
    costs = task.cost_model()
    T = p.steps
    assert count_flops(forward, p.dynamics, s0, hp, T, p.batch_at, p.outer) == costs.forward(T)

    def chunk():
        online = ForwardState(p.dynamics, s0, hp)
        for t in range(1, 4):
            online.advance(p.batch_at(t))
        online.hypergradient(p.outer)

    assert count_flops(chunk) == costs.rtho_chunk(3, p.outer, "all")


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_a_black_box_evaluation_costs_one_plain_run_and_the_validation_loss(kind):
    task = TASKS.create(kind, seed=0, **SMALL[kind])
    costs = task.cost_model()
    task.blackbox_setup_flops()  # hyper-cleaning's scoring model, paid once, not here
    assert count_flops(task.evaluate, task.default_config()) >= costs.evaluation()
    assert costs.evaluation() == costs.plain_run + costs.outer()


def test_matrix_vector_products_are_counted():
    a, v = torch.randn(5, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    assert count_flops(torch.mv, a, v) == 2 * 5 * 3
    assert count_flops(torch.dot, v, v) == 2 * 3
    assert count_flops(torch.mm, a, a.T) == 2 * 5 * 3 * 5


def test_a_fixed_cost_model_cannot_count_gradient_units():
    costs = CostModel.fixed(100)
    assert costs.plain_run == costs.evaluation() == 100
    with pytest.raises(NotImplementedError, match="cannot be counted"):
        costs.reverse_step()


def test_budget_stops_at_the_first_limit_reached():
    budget = Budget(cost=2.5, steps=1000).start()
    budget.price(100)
    while budget.fits(100, 10):
        budget.spend(100, 10)
    assert budget.units == 2 and budget.cost_used == 2.0 and budget.steps_used == 20
    budget = Budget(cost=100.0, steps=25).start()
    budget.price(100)
    while budget.fits(100, 10):
        budget.spend(100, 10)
    assert budget.units == 2


def test_seconds_budget_does_not_start_a_unit_predicted_to_end_past_it():
    budget = Budget(seconds=10.0).start()
    budget.unit_seconds.append(4.0)  # the last unit took 4 s
    budget._start -= 7.0  # 7 s have passed: 7 + 4 > 10
    assert not budget.fits(0)
    budget._start += 2.0  # 5 s have passed: 5 + 4 <= 10
    assert budget.fits(0)


def test_paused_bookkeeping_is_off_the_clock(monkeypatch):
    now = [100.0]  # a clock the test moves: no margin for a loaded machine's scheduling
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    budget = Budget(seconds=10.0).start()
    now[0] += 1.0  # a second of work
    with budget.paused():
        now[0] += 0.5  # as long as a slow FLOP count
    now[0] += 2.0
    assert budget.elapsed == 3.0


@pytest.mark.parametrize(
    "limits, message",
    [
        ({}, "needs `cost`, `seconds` or `steps`"),
        ({"cost": -1.0}, "cost must be a positive finite number"),
        ({"cost": float("nan")}, "cost must be a positive finite number"),
        ({"seconds": float("inf")}, "seconds must be a positive finite number"),
        ({"steps": 0}, "steps must be a positive integer"),
    ],
)
def test_bad_budgets_are_refused(limits, message):
    with pytest.raises(BudgetError, match=message):
        Budget(**limits)


def test_a_cost_budget_must_be_priced_before_spending():
    with pytest.raises(BudgetError, match="price"):
        Budget(cost=1.0).fits(1)


def test_the_in_run_check_and_the_up_front_check_agree_at_the_limit():
    budget = Budget(cost=0.57).start()
    budget.price(100)
    assert budget.smallest_unit_error(57, 0, "unit") is None and budget.fits(57)
    error = budget.smallest_unit_error(58, 0, "unit")
    assert "set cost >= 0.58" in str(error)
    fixed = Budget(cost=0.58)
    fixed.price(100)
    assert fixed.fits(58)
