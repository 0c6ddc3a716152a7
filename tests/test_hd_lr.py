"""hd-lr, hypergradient descent on the learning rate (Baydin et al., 2018): its first step is
Baydin's rule computed by hand, the hypergradient's sign on a quadratic whose sign is known,
the assumption it rests on checked by forward mode, its cost, its replay, its refusals."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import jvp

from hobench.harness.preflight import check_budgets
from hobench.harness.suite import SuiteError
from hobench.hypergrad import adam, gd, momentum
from hobench.strategies.online import hypergradient
from tests.test_multifidelity import STEP, T, run, suite, toy


def test_hd_lr_takes_baydins_step_and_raises_a_learning_rate_that_is_too_small():
    task, eta, beta = toy(), 0.05, 0.01  # η λ_max(XᵀX/n) ≈ 0.05: far below 1
    recorder, _ = run(task, "hd-lr", {"steps": 2}, hyper_lr=beta, record_every=2)
    X, y = task.train

    def gradient(w):
        return X.T @ (X @ w - y) / len(y)

    g1 = gradient(torch.zeros(4, dtype=torch.float64))
    g2 = gradient(-eta * g1)
    # SGD-HD: η_2 = η_1 − β ∂J_2/∂η_1 = η_1 + β ∇J_2 · ∇J_1, and here ∇J_2 · ∇J_1 > 0.
    assert float(g2 @ g1) > 0
    assert recorder.final["config"]["lr"] == pytest.approx(eta + beta * float(g2 @ g1), rel=1e-12)
    assert recorder.final["config"]["lr"] > eta


@pytest.mark.parametrize("a, direction", [(0.5, -1), (1.5, +1)])
def test_the_hypergradient_sign_on_a_quadratic(a, direction):
    """J = ½ a (w − c)², one gradient step from w = 0 at η = 1: an undershoot (ηa < 1) gives
    h = a²c²(ηa − 1) < 0, so η grows; an overshoot (ηa > 1) h > 0, so η shrinks."""
    c, eta = 2.0, torch.tensor(1.0, dtype=torch.float64)
    dynamics = gd(lambda w, hp, batch: 0.5 * a * ((w - c) ** 2).sum(), lr="lr")
    w0 = torch.zeros(1, dtype=torch.float64)
    w1 = dynamics.step({"w": w0}, {"lr": eta}, None)["w"]
    h = hypergradient(torch.tensor([a * (float(w1) - c)]), w1, w0, float(eta))
    assert h == pytest.approx(a * a * c * c * (a - 1), rel=1e-12)
    assert math.copysign(1, h) == direction


@pytest.mark.parametrize("make", [gd, momentum, adam])
def test_a_step_is_linear_in_the_learning_rate_as_hd_lr_assumes(make):
    """hd-lr takes ∂w_t/∂η = (w_t − w_{t-1}) / η; forward mode checks it through one step."""
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(6, 3, generator=gen, dtype=torch.float64), torch.randn(6, generator=gen)
    dynamics = make(lambda w, hp, b: ((X @ w - y.double()) ** 2).mean(), lr="lr")
    hp = {"lr": torch.tensor(0.1, dtype=torch.float64), "momentum": torch.tensor(0.9)}
    state = dynamics.step(dynamics.init(torch.randn(3, dtype=torch.float64), hp), hp, None)

    def weights(eta):
        return dynamics.step(state, {**hp, "lr": eta}, None)["w"]

    w, tangent = jvp(weights, (hp["lr"],), (torch.ones((), dtype=torch.float64),))
    assert torch.allclose(tangent, (w - state["w"]) / hp["lr"], rtol=1e-10, atol=1e-14)


def test_hd_lr_costs_a_step_and_a_gradient_and_its_schedule_is_replayed():
    task = toy()
    recorder, budget = run(task, "hd-lr", {"cost": 5}, hyper_lr=0.01)
    # T steps, and from t = 2 on one more gradient of J: (27 + 26) · 128 FLOPs.
    assert budget.flops_used == (T + T - 1) * STEP
    assert recorder.final["online_steps"] == T
    # The replay from s_0 is the online run itself: the same weights, bit for bit.
    assert recorder.final["val_loss"] == recorder.points[-1]["val_loss"]
    # Only the whole run can be the answer: earlier points are never the incumbent.
    assert [p["step"] for p in recorder.points] == [10, 20, 27]
    assert all(p["incumbent_val_loss"] is None for p in recorder.points[:-1])
    assert recorder.points[-1]["incumbent_val_loss"] == recorder.final["val_loss"]
    assert recorder.final["val_loss"] < task.evaluate(task.default_config()).val_loss


def test_hd_lr_stops_inside_a_small_budget_and_holds_its_last_rate():
    recorder, budget = run(toy(), "hd-lr", {"cost": 1.0}, record_every=5)
    # chunks of 5 steps: 5 + 4 gradients, then 10 and 10 (1152, 2432, 3712 > 3456 FLOPs)
    assert budget.flops_used == 2432 and recorder.final["online_steps"] == 10
    assert recorder.final["config"]["lr"] == recorder.points[-1]["hp"]["lr"]


@pytest.mark.parametrize(
    "param, match",
    [("hyper_lr = 0.0", "hyper_lr: 0.0 is out of range"), ("record_every = 0", "out of range")],
)
def test_bad_parameters_are_one_line(tmp_path, param, match):
    with pytest.raises(SuiteError, match=match) as error:
        suite(tmp_path, f'kind = "hd-lr"\n{param}')
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("task, task_params", [("ridge", "steps = 20\n"), ("toy-quad", "")])
def test_a_task_without_a_learning_rate_is_refused_in_one_line(tmp_path, task, task_params):
    cells = suite(tmp_path, 'kind = "hd-lr"', task, task_params)
    with pytest.raises(SuiteError, match=f"task '{task}' searches none; exclude") as error:
        check_budgets(cells, None)
    assert "\n" not in str(error.value)


def test_seeded_runs_are_identical():
    first, _ = run(toy(), "hd-lr", {"cost": 4}, seed=3, hyper_lr=0.01)
    again, _ = run(toy(), "hd-lr", {"cost": 4}, seed=3, hyper_lr=0.01)
    assert [{**p, "elapsed_s": 0} for p in first.points] == [
        {**p, "elapsed_s": 0} for p in again.points
    ]
    assert first.final == again.final
