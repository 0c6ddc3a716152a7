"""Stochastic bilevel solvers (SOBA, AmIGO, F2SA) and the zero-order hypergradient: exact on
the quadratic task's closed form, equal to the IFT hypergradient at a solved inner problem,
unbiased where they should be, refused in one line when misconfigured (float64 throughout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hobench.cli import main
from hobench.domains import ParamError, check
from hobench.harness.budget import Budget
from hobench.harness.cell import run_cell
from hobench.harness.recorder import Recorder
from hobench.harness.suite import Cell
from hobench.hypergrad import Dynamics, ift_cg
from hobench.hypergrad.bilevel import (
    amigo_step,
    saba_step,
    saba_tables,
    soba_step,
    zero_order_gradient,
)
from hobench.registry import STRATEGIES, TASKS
from hobench.strategies.bilevel import bilevel_of
from hobench.tasks.base import GradientProblem
from tests.test_hypergrad import rel_err

SOLVERS = ["soba", "saba", "amigo", "f2sa"]


def run(task, strategy, budget, seed=0, **params):
    budget = Budget(**budget).start()
    recorder = Recorder(budget)
    STRATEGIES.create(strategy, **params).run(task, budget, np.random.default_rng(seed), recorder)
    return recorder, budget


def distance_to_optimum(task, point) -> float:
    lam = torch.tensor(point["hp"]["lam"], dtype=torch.float64)
    return float((lam - task.lambda_star).norm() / task.lambda_star.norm())


def test_quadratic_closed_form_is_the_minimiser_and_T_steps_reach_the_inner_solution():
    task = TASKS.create("quadratic", seed=0)
    lam = task.lambda_star
    assert rel_err(task._train(lam), task.solution(lam)) < 1e-12  # f is exact after T steps
    eps = 1e-5
    for j in range(len(lam)):
        e = torch.zeros_like(lam)
        e[j] = eps
        slope = (task.value(lam + e) - task.value(lam - e)) / (2 * eps)
        assert abs(slope) < 1e-8  # ∇f(λ*) = 0
        assert task.value(lam + 10 * e) > task.f_star  # and it is a minimum
    assert (
        abs(task.evaluate({f"lam_{j}": float(v) for j, v in enumerate(lam)}).extra["regret"])
        < 1e-12
    )


@pytest.mark.parametrize(
    ("solver", "steps"), [("soba", 800), ("saba", 800), ("amigo", 1500), ("f2sa", 1500)]
)
def test_solvers_with_exact_oracles_reach_the_closed_form_optimum(solver, steps):
    task = TASKS.create("quadratic", seed=0)  # batch sizes 0: every oracle is exact
    recorder, _ = run(task, solver, {"steps": steps}, record_every=1)
    distances = [distance_to_optimum(task, p) for p in recorder.points]
    quarter = len(distances) // 4
    assert distances[0] > distances[quarter] > distances[2 * quarter] > distances[-1]
    assert distances[-1] <= 1e-2
    assert recorder.final["regret"] < 1e-4 * task.f_star


def test_zero_order_moves_towards_the_optimum():
    """Its iterations are 9 whole inner runs each (M = 4): 20 of them move λ, no more (with
    T = 10 its f is the 10-step run's, whose minimiser is near, not at, λ*)."""
    task = TASKS.create("quadratic", seed=0, steps=10)
    recorder, _ = run(task, "zero-order", {"steps": 20 * 9 * 10}, directions=4)
    distances = [distance_to_optimum(task, p) for p in recorder.points]
    assert len(distances) == 20 and max(distances[-5:]) < 0.7 * distances[0]


def solved_inner_problem(seed=0):
    """The quadratic task's problem at λ = (0.3, −0.2, 0.5), with z = z*(λ) exactly."""
    task = TASKS.create("quadratic", seed=seed)
    problem = task.gradient_problem()
    bilevel, _ = bilevel_of(problem)
    hp = {"lam": torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)}
    z = task.solution(hp["lam"])
    state = problem.dynamics.init(z, hp)
    exact = ift_cg(problem.dynamics, state, hp, 0, problem.batch_at, problem.outer, 100, 1e-14)
    return task, problem, bilevel, hp, z, exact.grad["lam"]


def test_soba_direction_at_a_solved_inner_problem_is_the_ift_hypergradient():
    task, problem, bilevel, hp, z, ift = solved_inner_problem()
    v = torch.zeros_like(z)
    for _ in range(300):  # v's contraction is 1 − η μ_H ≤ 0.55 per step
        z_next, v, direction = soba_step(bilevel, z, v, hp, None, None, task.lr, task.lr)
        assert rel_err(z_next, z) < 1e-12  # at z*, z's step does not move it
    assert rel_err(direction["lam"], ift) < 1e-6


def test_amigo_direction_at_a_solved_inner_problem_is_the_ift_hypergradient():
    task, problem, bilevel, hp, z, ift = solved_inner_problem()
    batches = iter(lambda: None, 0)  # every oracle on the whole training set
    z_next, _, direction = amigo_step(
        bilevel, z, torch.zeros_like(z), hp, batches, None, 300, task.lr, task.lr
    )
    assert rel_err(z_next, z) < 1e-12
    assert rel_err(direction["lam"], ift) < 1e-6


def test_saba_removes_the_minibatch_noise_that_soba_keeps():
    """At a fixed λ, on minibatches of 20 of the 200 rows (a partition of 10), SABA's direction
    converges to the IFT hypergradient; SOBA's keeps its sampling noise."""
    task = TASKS.create("quadratic", seed=0, batch_size=20, val_batch_size=20)
    problem = task.gradient_problem()
    bilevel, _ = bilevel_of(problem)
    _, _, _, hp, z, ift = solved_inner_problem()
    tables = saba_tables(z, hp, *problem.partition)
    draws = torch.Generator().manual_seed(0)
    saba = soba = (z, torch.zeros_like(z))
    for t in range(1, 601):
        i, j = (int(torch.randint(10, (), generator=draws)) for _ in range(2))
        batches = (i, problem.minibatch_at(i + 1)), (j, problem.val_batch_at(j + 1))
        *saba, saba_direction = saba_step(bilevel, *saba, hp, *batches, tables, task.lr / 3)
        minibatches = problem.minibatch_at(t), problem.val_batch_at(t)
        *soba, soba_direction = soba_step(bilevel, *soba, hp, *minibatches, task.lr, task.lr)
    assert rel_err(saba_direction["lam"], ift) < 1e-6
    assert rel_err(soba_direction["lam"], ift) > 1e-2


def test_zero_order_estimate_is_unbiased_for_a_quadratic():
    """f(λ) = ½ λᵀAλ + bᵀλ: the mean of 4000 one-direction estimates is within 4 standard errors
    of ∇f(λ) = Aλ + b in every coordinate (the smoothing adds a constant, no bias), and a
    planted bias of one standard error's size would be caught by the 4000 draws' mean."""
    gen = torch.Generator().manual_seed(0)
    A = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]], dtype=torch.float64)
    b = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    lam = torch.tensor([0.5, 0.2, -1.0], dtype=torch.float64)

    def f(hp):
        x = hp["lam"]
        return float(0.5 * x @ A @ x + b @ x)

    draws = torch.stack(
        [
            zero_order_gradient(f, {"lam": lam}, 0.3, 1, gen, {"lam": 2.0})["lam"]
            for _ in range(4000)
        ]
    )
    mean, stderr = draws.mean(0), draws.std(0) / 4000**0.5
    assert ((mean - (A @ lam + b)).abs() < 4 * stderr).all()
    assert (stderr < 0.1 * (A @ lam + b).abs().max()).all()


def test_a_diverging_solver_is_a_failed_cell_with_its_reason():
    cell = Cell("q", "quadratic", {}, "soba", "soba", {"inner_lr": 1e6}, 0, {"cost": 5}, "cpu")
    record = run_cell(cell, "bilevel-test", None, {"calibration_s": 0.05})
    assert record["status"] == "failed"
    assert record["error"].startswith("Diverged: soba diverged at iteration ")
    assert record["error"].endswith("lower inner_lr or outer_lr")
    assert record["trajectory"][-1]["failed"]


def test_solvers_stop_only_when_the_next_iteration_would_overrun_a_cost_budget():
    task = TASKS.create("quadratic", seed=0, batch_size=50, val_batch_size=50)
    for solver, cost in [*((s, 2.5) for s in SOLVERS), ("zero-order", 12.5)]:
        recorder, budget = run(task, solver, {"cost": cost})
        unit = budget.cost_used / budget.units
        assert 0 < budget.cost_used <= cost < budget.cost_used + unit


@pytest.mark.parametrize(
    ("strategy", "setting", "message"),
    [
        ("soba", "inner_lr = 0.0", "strategies[0].inner_lr: 0.0 is out of range"),
        ("soba", "outer_lr = -0.1", "strategies[0].outer_lr: -0.1 is out of range"),
        ("amigo", "inner_lr = nan", "strategies[0].inner_lr: not a finite number"),
        ("amigo", "inner_steps = 0", "strategies[0].inner_steps: 0 is out of range"),
        ("f2sa", "penalty = 0.0", "strategies[0].penalty: 0.0 is out of range"),
        ("zero-order", "sigma = inf", "strategies[0].sigma: not a finite number"),
        ("zero-order", "directions = 0", "strategies[0].directions: 0 is out of range"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2_before_any_cell(
    tmp_path: Path, capsys, strategy, setting, message
):
    suite = tmp_path / "bad.toml"
    suite.write_text(
        'seeds = [0]\n[budget]\ncost = 5\n[[tasks]]\nkind = "quadratic"\n'
        f'[[strategies]]\nkind = "{strategy}"\n{setting}\n'
    )
    results = tmp_path / "r"
    assert main(["run", str(suite), "--results-dir", str(results), "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not results.exists() or not any(results.rglob("*.jsonl"))


def test_a_task_without_a_training_loss_is_refused_before_any_cell():
    problem = TASKS.create("quadratic", seed=0).gradient_problem()
    blind = Dynamics(problem.dynamics.init, problem.dynamics.step, None)
    fields = {k: getattr(problem, k) for k in problem.__dataclass_fields__}
    costs = type("Costs", (), {"problem": GradientProblem(**{**fields, "dynamics": blind})})()
    for solver in SOLVERS:
        with pytest.raises(ValueError, match=f"^{solver} needs the task's training loss"):
            STRATEGIES.create(solver).first_unit(None, costs)


def test_hypercleaning_corruption_rate_and_minibatches():
    task = TASKS.create("hypercleaning", seed=0, corruption=0.7, batch_size=250)
    assert len(task.corrupted) == round(0.7 * 1250)
    with pytest.raises(ParamError, match="corruption: set together with n_corrupt"):
        check(
            TASKS.get("hypercleaning"),
            {**TASKS.parameters("hypercleaning"), "n_corrupt": 100, "corruption": 0.5},
        )
    problem = task.gradient_problem()
    params = (torch.randn(10, 784) * 0.01, torch.zeros(10))
    hp = {"weights": torch.rand(1250)}
    batches = [problem.minibatch_at(t) for t in range(1, 6)]  # one epoch: every row once
    assert sorted(torch.cat([rows for *_, rows in batches]).tolist()) == list(range(1250))
    full = problem.dynamics.loss(params, hp, problem.batch_at(1))
    mean_of_batches = sum(problem.dynamics.loss(params, hp, b) for b in batches) / 5
    assert rel_err(mean_of_batches, full) < 1e-5  # unbiased: λ follows its rows
