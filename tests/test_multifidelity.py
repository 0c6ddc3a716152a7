"""Multi-fidelity strategies (asha, hyperband, bohb): a trial is charged for the steps it
trained, budgets are kept, runs are seeded, pruning happens, and the answer is retrained like
every black-box answer. Also the tasks' training hook they rely on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hobench.harness.budget import Budget, BudgetError
from hobench.harness.preflight import check_budgets
from hobench.harness.recorder import Recorder
from hobench.harness.suite import SuiteError, load_suite
from hobench.registry import STRATEGIES, TASKS
from hobench.strategies.multifidelity import rungs
from tests import harness_toys  # noqa: F401  (registers toy-linear)

MULTI_FIDELITY = ["asha", "hyperband", "bohb"]
# toy-linear by hand: a step is X·w and Xᵀ·r on 8 × 4 inputs (2 · 2·8·4 FLOPs), a validation
# pass one product (2·8·4); T = 27 and the default first rung 27 // 3³ = 1.
STEP, OUTER, T = 128, 64, 27
PLAIN_RUN = T * STEP
RIDGE = dict(groups=2, steps=60, l2_high=3.0)


def run(task, strategy, budget, seed=0, **params):
    budget = Budget(**budget).start()
    recorder = Recorder(budget)
    STRATEGIES.create(strategy, **params).run(task, budget, np.random.default_rng(seed), recorder)
    return recorder, budget


def toy():
    return TASKS.create("toy-linear")


def test_the_toy_costs_what_is_counted_by_hand():
    costs = toy().cost_model()
    assert (costs.step(), costs.outer(), costs.plain_run) == (STEP, OUTER, PLAIN_RUN)
    assert rungs(T, 1, 3) == [1, 3, 9, 27]


@pytest.mark.parametrize("strategy", MULTI_FIDELITY)
def test_a_pruned_trial_is_charged_only_the_steps_it_trained(strategy):
    recorder, budget = run(toy(), strategy, {"cost": 6})
    # FLOPs of a trial by how far it trained: k steps and one validation per rung reached.
    charged = {1: 1 * STEP + 1 * OUTER, 3: 3 * STEP + 2 * OUTER, 9: 9 * STEP + 3 * OUTER}
    charged[27] = 27 * STEP + 4 * OUTER  # 3712: a plain run (3456) and 4 validations
    assert charged[1] == 192 and charged[3] == 512 and charged[9] == 1344
    flops = 0
    for point in recorder.points:
        assert point["ended"] in ("pruned", "complete", "budget")
        assert (point["trained_steps"] == T) == (point["ended"] == "complete")
        flops += charged[point["trained_steps"]]
        assert point["cost"] == pytest.approx(flops / PLAIN_RUN, rel=1e-12)
    assert any(p["ended"] == "pruned" for p in recorder.points)
    assert budget.flops_used == flops
    # The search ends at the first stretch that does not fit: the next rung of a trial the
    # budget cut short, or the first rung of a new one.
    last = recorder.points[-1]
    trained = last["trained_steps"] if last["ended"] == "budget" else 0
    following = {0: 1, 1: 3, 3: 9, 9: 27}[trained]
    assert 0 <= 6 * PLAIN_RUN - flops < (following - trained) * STEP + OUTER


@pytest.mark.parametrize("strategy", MULTI_FIDELITY)
@pytest.mark.parametrize("limit", [{"cost": 7.5}, {"steps": 60 * 5 + 7}])
def test_no_budget_is_exceeded_on_ridge(strategy, limit):
    task = TASKS.create("ridge", seed=0, **RIDGE)
    recorder, budget = run(task, strategy, limit)
    used = {"cost": budget.cost_used, "steps": budget.steps_used}
    assert all(0 < used[name] <= value for name, value in limit.items())
    assert all(p["trained_steps"] <= 60 for p in recorder.points)
    assert math.isfinite(recorder.final["regret"])


def test_a_wall_clock_budget_overruns_by_less_than_one_stretch():
    _, budget = run(toy(), "hyperband", {"seconds": 0.3})
    assert budget.overrun <= max(0.05 * 0.3, max(budget.unit_seconds))


@pytest.mark.parametrize("strategy", MULTI_FIDELITY)
def test_seeded_runs_are_identical(strategy):
    first, _ = run(toy(), strategy, {"cost": 4}, seed=3)
    again, _ = run(toy(), strategy, {"cost": 4}, seed=3)

    def strip(points):
        return [{k: v for k, v in p.items() if k != "elapsed_s"} for p in points]

    assert strip(first.points) == strip(again.points)
    assert first.final == again.final


@pytest.mark.parametrize("strategy", ["asha", "hyperband"])
def test_pruning_buys_more_configurations_than_whole_runs_could(strategy):
    recorder, budget = run(toy(), strategy, {"cost": 6})
    pruned = [p for p in recorder.points if p["ended"] == "pruned"]
    complete = [p for p in recorder.points if p["ended"] == "complete"]
    assert pruned
    # Without pruning 6 plain runs pay for at most 6 evaluations; these trials saw more.
    assert len(recorder.points) > 6
    assert all(p["trained_steps"] < T for p in pruned)
    # The answer is the best complete trial, never a pruned one's lower-fidelity loss...
    best = min(complete, key=lambda p: p["val_loss"])
    assert recorder.final["config"] == best["hp"]
    assert recorder.points[-1]["incumbent_val_loss"] == best["val_loss"]
    # ...retrained by the final protocol every black-box strategy's answer gets.
    assert recorder.final["val_loss"] == toy().evaluate(best["hp"]).val_loss


@pytest.mark.parametrize(
    "kind, params",
    [
        ("ridge", RIDGE),
        (
            "auxtarget",
            dict(n_train=100, n_val=50, n_test=50, depth=1, width=4, batch_size=20, steps=12),
        ),
        (
            "hypercleaning",
            dict(n_train=60, n_val=40, n_test=40, n_corrupt=30, radius=30.0, steps=12),
        ),
    ],
)
def test_intermediate_scores_are_the_same_training_as_an_evaluation(kind, params):
    task = TASKS.create(kind, seed=1, **params)
    config = {p.name: (p.low * p.high) ** 0.5 if p.log else p.high for p in task.space()}
    T = task.steps_per_evaluation()
    seen = list(task.evaluations(config, [1, T // 2, T]))
    assert [t for t, _ in seen] == [1, T // 2, T]
    assert seen[-1][1] == task.evaluate(config)
    assert task.evaluate_schedule(lambda t: config) == task.evaluate(config)
    assert seen[0][1].val_loss != seen[-1][1].val_loss


# --- parameters and refusals, before any cell runs ----------------------------------------------

HEAD = 'seeds = [0]\n[budget]\ncost = 20\n[[tasks]]\nkind = "{task}"\n{task_params}'


def suite(tmp_path, strategy: str, task: str = "toy-linear", task_params: str = "") -> list:
    path = tmp_path / "suite.toml"
    text = HEAD.format(task=task, task_params=task_params) + f"[[strategies]]\n{strategy}\n"
    path.write_text(text, encoding="utf-8")
    return load_suite(path).cells()


@pytest.mark.parametrize(
    "strategy, match",
    [
        ('kind = "hyperband"\nreduction_factor = 1', "reduction_factor: 1 is out of range"),
        ('kind = "asha"\nmin_resource = -2', "min_resource: -2 is out of range"),
        ('kind = "asha"\nmin_early_stopping_rate = 0.5', "expected int, got float 0.5"),
        ('kind = "bohb"\nn_startup_trials = -1', "n_startup_trials: -1 is out of range"),
    ],
)
def test_bad_parameters_are_one_line(tmp_path, strategy, match):
    with pytest.raises(SuiteError, match=match) as error:
        suite(tmp_path, strategy)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "strategy, task, task_params, match",
    [
        ('kind = "hyperband"', "toy-quad", "", "only evaluates whole runs"),
        ('kind = "asha"\nmin_resource = 27', "toy-linear", "", "must be below the task's T=27"),
    ],
)
def test_a_task_a_strategy_cannot_run_is_refused_in_one_line(
    tmp_path, strategy, task, task_params, match
):
    cells = suite(tmp_path, strategy, task, task_params)
    with pytest.raises(SuiteError, match=match) as error:
        check_budgets(cells, None)
    assert "\n" not in str(error.value)


def test_a_budget_below_one_whole_trial_is_refused():
    with pytest.raises(BudgetError, match=r"below one trial of 27 steps with 4 validations"):
        run(toy(), "hyperband", {"cost": 1.0})
