"""Population training (hobench.tasks.population) and the black-box strategies' `population`.

Tolerance. The tasks here run in float64. A vmapped step computes the k configurations' matrix
products as one batched product (bmm, or one mm where the shared batch is the left factor),
whose kernels may sum a dot product in another order than k separate products do; each such
sum then differs by a few ulps (~1e-16 relative), and T steps carry the difference forward
without amplifying it much on these contracting runs. We allow 1e-10 relative (1e-12 absolute):
far above that rounding, far below any real difference. In float32 the same reordering moves
results by ~1e-7 relative per product, which T steps can grow to 1e-5 or more, so a float32
population is equal to its one-by-one runs only to that looser tolerance — never bit for bit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from hobench.domains import ParamError, check
from hobench.harness.budget import Budget
from hobench.harness.recorder import Recorder
from hobench.hypergrad.dynamics import adam, gd, momentum, scheduled_gd
from hobench.registry import STRATEGIES, TASKS
from hobench.tasks import population
from hobench.tasks.base import Training
from tests.test_strategies import RIDGE
from tests.test_tasks import SMALL_AUX, SMALL_HC

RTOL, ATOL = 1e-10, 1e-12


def assert_same(batched, alone):
    assert len(batched) == len(alone)
    for b, a in zip(batched, alone, strict=True):
        assert b.failed == a.failed
        if a.failed:
            continue
        assert b.val_loss == pytest.approx(a.val_loss, rel=RTOL, abs=ATOL)
        for name in ("val_acc", "test_acc"):  # accuracies: equal (or both None)
            assert getattr(b, name) == getattr(a, name)
        assert b.extra.keys() == a.extra.keys()
        for key, value in a.extra.items():
            assert b.extra[key] == pytest.approx(value, rel=RTOL, abs=ATOL), key


def test_ridge_population_equals_one_by_one_with_a_diverging_config():
    task = TASKS.create("ridge", seed=3, groups=3, steps=50)
    configs = [{"l2_0": a, "l2_1": 0.5, "l2_2": 2.0} for a in (0.01, 0.3, 1.0, 10.0)]
    # λ = 1e6 with the step size 1/(1 + l2_high): the weights grow ×2.5e5 a step to inf/NaN.
    configs.insert(2, {"l2_0": 1e6, "l2_1": 0.5, "l2_2": 2.0})
    batched = task.evaluate_population(configs)
    alone = [task.evaluate(c) for c in configs]
    assert [e.failed for e in batched] == [False, False, True, False, False]
    assert_same(batched, alone)


class BlowUpCleaning(TASKS.get("hypercleaning")):
    """Hyper-cleaning whose configurations may scale λ by `blow_up`: no configuration of its own
    space can diverge (λ ∈ {0, 1}, a fixed step size), this one can (λ = ∞ makes the first
    step's gradient ∞ − ∞ and 0 · ∞: NaN weights)."""

    def training(self) -> Training:
        run = super().training()

        def hp(config):
            return {"weights": run.hp(config)["weights"] * config.get("blow_up", 1.0)}

        return dataclasses.replace(run, hp=hp)


def test_hypercleaning_population_equals_one_by_one_with_a_diverging_config():
    task = BlowUpCleaning(seed=1, **SMALL_HC)
    configs = [{"keep": k} for k in (0.1, 0.45, 1.0)]
    configs.insert(1, {"keep": 0.7, "blow_up": math.inf})
    batched = task.evaluate_population(configs)
    alone = [task.evaluate(c) for c in configs]
    assert [e.failed for e in batched] == [False, True, False, False]
    assert_same(batched, alone)


def test_auxtarget_population_equals_one_by_one_with_a_diverging_config():
    task = TASKS.create("auxtarget", seed=3, **SMALL_AUX)
    configs = [
        {"lr": lr, "momentum": mu, "rho": rho}
        for lr, mu, rho in ((0.01, 0.0, 0.0), (0.1, 0.5, 1.6), (0.9, 0.99, 4.0))
    ]
    configs.insert(1, {"lr": 1e300, "momentum": 0.9, "rho": 4.0})  # overflows to inf, then NaN
    batched = task.evaluate_population(configs)
    alone = [task.evaluate(c) for c in configs]
    assert [e.failed for e in batched] == [False, True, False, False]
    assert_same(batched, alone)


def _ridge_loss(w, hp, batch):
    X = torch.linspace(-1, 1, 24, dtype=torch.float64).reshape(8, 3)
    y = torch.arange(8, dtype=torch.float64) / 8
    return 0.5 * ((X @ w - y) ** 2).mean() + 0.5 * hp["l2"] * (w * w).sum()


@pytest.mark.parametrize(
    "name, dynamics, batch_at",
    [
        ("gd", gd(_ridge_loss, lr="lr"), lambda t: None),
        ("momentum", momentum(_ridge_loss, lr="lr", mu=0.9), lambda t: None),
        ("adam", adam(_ridge_loss, lr="lr"), lambda t: None),
        ("scheduled_gd", scheduled_gd(_ridge_loss, steps=12, pieces=3), lambda t: (t, None)),
    ],
)
def test_every_builtin_dynamics_vmaps_to_its_one_by_one_runs(name, dynamics, batch_at):
    pieces = 3 if name == "scheduled_gd" else 1

    def hp(config):
        lr = torch.full((pieces,), config["lr"], dtype=torch.float64)
        return {"lr": lr if pieces > 1 else lr[0], "l2": torch.tensor(config["l2"])}

    run = Training(
        dynamics=dynamics,
        params0=lambda: torch.zeros(3, dtype=torch.float64),
        hp=hp,
        steps=12,
        batch_at=batch_at,
        score=None,
    )
    configs = [{"lr": lr, "l2": l2} for lr, l2 in ((0.1, 0.0), (0.5, 0.3), (1.0, 2.0))]
    batched = population.train_population(run, configs)
    for config, weights in zip(configs, batched, strict=True):
        state = run.dynamics.init(run.params0(), run.hp(config))
        with torch.no_grad():
            for t in range(1, run.steps + 1):
                state = run.dynamics.step(state, run.hp(config), run.batch_at(t))
        torch.testing.assert_close(weights, state["w"], rtol=RTOL, atol=ATOL)
        assert weights.abs().sum() > 0


class Unbatchable(TASKS.get("ridge")):
    """A ridge whose step reads a hyperparameter as a Python number: vmap cannot batch that."""

    def training(self) -> Training:
        run = super().training()
        step = run.dynamics.step

        def python_step(state, hp, batch):
            if float(hp["log_l2"].sum()) > 1e9:  # data-dependent control flow
                raise AssertionError("unreachable")
            return step(state, hp, batch)

        return dataclasses.replace(
            run, dynamics=dataclasses.replace(run.dynamics, step=python_step)
        )


def test_a_step_that_cannot_be_vmapped_falls_back_one_by_one_with_its_reason():
    task = Unbatchable(seed=0, **RIDGE)
    configs = [{"l2_0": a, "l2_1": 1.0} for a in (0.1, 1.0, 3.0)]
    with pytest.warns(RuntimeWarning, match="cannot be vmapped"):
        batched = task.evaluate_population(configs)
    assert [e.val_loss for e in batched] == [task.evaluate(c).val_loss for c in configs]


def test_a_task_without_training_is_evaluated_one_by_one():
    task = TASKS.create("featuredecay", seed=0, features=200, steps=5)
    configs = [task.default_config(), task.default_config()]
    batched = task.evaluate_population(configs)
    assert [e.val_loss for e in batched] == [task.evaluate(c).val_loss for c in configs]


# --- the strategies' `population` -------------------------------------------------------------


def run(task, strategy, budget, seed=0, **params):
    budget = Budget(**budget).start()
    recorder = Recorder(budget)
    STRATEGIES.create(strategy, **params).run(task, budget, np.random.default_rng(seed), recorder)
    return recorder, budget


def strip(points):
    return [{k: v for k, v in p.items() if k != "elapsed_s"} for p in points]


@pytest.mark.parametrize("strategy", ["random", "qmc", "grid"])
def test_population_one_is_todays_loop_bit_for_bit(strategy, monkeypatch):
    task = TASKS.create("ridge", seed=0, **RIDGE)
    today, today_budget = run(task, strategy, {"cost": 7.5})
    calls = []
    monkeypatch.setattr(type(task), "evaluate_population", lambda self, c: calls.append(c))
    explicit, budget = run(
        TASKS.create("ridge", seed=0, **RIDGE), strategy, {"cost": 7.5}, population=1
    )
    assert not calls  # k = 1 evaluates one configuration at a time, with `evaluate`
    assert strip(explicit.points) == strip(today.points) and explicit.final == today.final
    assert budget.flops_used == today_budget.flops_used and budget.units == today_budget.units


@pytest.mark.parametrize("strategy", ["random", "qmc", "grid"])
@pytest.mark.parametrize("budget", [{"cost": 7.5}, {"steps": 60 * 7 + 11}])
def test_population_eight_spends_what_population_one_spends(strategy, budget):
    one, one_budget = run(TASKS.create("ridge", seed=0, **RIDGE), strategy, budget)
    eight, eight_budget = run(
        TASKS.create("ridge", seed=0, **RIDGE), strategy, budget, population=8
    )
    assert eight_budget.flops_used == one_budget.flops_used
    assert eight_budget.steps_used == one_budget.steps_used
    assert eight_budget.units == one_budget.units == len(eight.points) == len(one.points)
    # The same configurations in the same order, each charged its own cost ...
    assert [p["hp"] for p in eight.points] == [p["hp"] for p in one.points]
    assert [p["cost"] for p in eight.points] == [p["cost"] for p in one.points]
    assert [p["inner_steps"] for p in eight.points] == [p["inner_steps"] for p in one.points]
    # ... and scored as one by one, to rounding.
    for a, b in zip(eight.points, one.points, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=RTOL, abs=ATOL)


def test_a_budget_for_five_evaluations_evaluates_five_with_population_eight(monkeypatch):
    task = TASKS.create("ridge", seed=0, **RIDGE)
    sizes = []
    batched = type(task).evaluate_population
    monkeypatch.setattr(
        type(task), "evaluate_population", lambda self, c: sizes.append(len(c)) or batched(self, c)
    )
    recorder, budget = run(task, "random", {"steps": 60 * 5 + 59}, population=8)
    assert len(recorder.points) == budget.units == 5 and budget.steps_used == 300
    assert sizes == [5]
    # Under a cost budget the first evaluation also pays hyper-cleaning-like setup costs: none
    # here, so 5.5 plain runs' worth of evaluations is 5 (each costs a plain run and E).
    recorder, budget = run(
        TASKS.create("ridge", seed=0, **RIDGE), "qmc", {"cost": 5.5}, population=8
    )
    assert len(recorder.points) == budget.units == 5


def test_population_under_a_seconds_budget_predicts_from_the_last_batch():
    task = TASKS.create("ridge", seed=0, **RIDGE)
    recorder, budget = run(task, "random", {"seconds": 1.0}, population=4)
    assert recorder.points and budget.units == len(recorder.points)
    # unit_seconds is per configuration: each of a batch's four gets a quarter of its seconds
    per_batch = [budget.unit_seconds[i : i + 4] for i in range(0, budget.units - 3, 4)]
    assert all(len(set(b)) == 1 for b in per_batch)
    longest_batch = 4 * max(budget.unit_seconds)
    assert budget.overrun <= max(0.05 * 1.0, longest_batch)


@pytest.mark.parametrize("strategy", ["random", "qmc", "grid"])
@pytest.mark.parametrize("value", [0, -2, 1.5, "8"])
def test_a_bad_population_is_a_one_line_error(strategy, value):
    cls = STRATEGIES.get(strategy)
    with pytest.raises(ParamError, match="population") as info:
        check(cls, {"population": value})
    assert "\n" not in str(info.value)


def test_population_on_hypercleaning_charges_the_setup_once():
    task = TASKS.create("hypercleaning", seed=1, **SMALL_HC)  # its final protocol: once
    one, one_budget = run(task, "grid", {"cost": 4.5})
    eight, eight_budget = run(task, "grid", {"cost": 4.5}, population=8)
    assert eight_budget.flops_used == one_budget.flops_used
    assert [p["cost"] for p in eight.points] == [p["cost"] for p in one.points]
    assert math.isfinite(eight.final["test_acc"])
