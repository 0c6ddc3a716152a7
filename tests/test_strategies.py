"""Strategies under one budget, scored on ridge (known λ*) and hyper-cleaning; all seeded."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from hobench.harness.budget import Budget, BudgetError
from hobench.harness.recorder import Recorder
from hobench.registry import STRATEGIES, TASKS, Registry
from hobench.strategies.blackbox import grid_shape, grid_values
from hobench.tasks.base import HyperParam

SMALL_AUX = dict(
    n_train=300,
    n_val=100,
    n_test=100,
    depth=1,
    width=8,
    batch_size=20,
    steps=30,
    val_batch_size=50,
    dtype="float64",
)

# A small, well-conditioned ridge: λ* = (0.37, 1.26), interior; T = 60 trains to convergence.
RIDGE = dict(groups=2, steps=60, l2_high=3.0)
ALL = [
    "default",
    "grid",
    "random",
    "tpe",
    "qmc",
    "gp",
    "cmaes",
    "reverse-hg",
    "forward-hg",
    "rtho",
    "rtho-nt",
    "truncated-hg",
    "ift-cg",
    "ift-neumann",
    "truncated-online",
]


def run(task, strategy, budget, seed=0, **strategy_params):
    budget = Budget(**budget).start()
    recorder = Recorder(budget)
    STRATEGIES.create(strategy, **strategy_params).run(
        task, budget, np.random.default_rng(seed), recorder
    )
    return recorder, budget


@pytest.mark.parametrize(
    "strategy", ["reverse-hg", "forward-hg", "truncated-hg", "ift-cg", "ift-neumann"]
)
def test_gradient_strategies_reach_the_ridge_optimum(strategy):
    task = TASKS.create("ridge", seed=0, **RIDGE)
    recorder, _ = run(task, strategy, {"steps": 60 * 40}, hyper_lr=0.04)
    f0 = recorder.points[0]["val_loss"]
    assert recorder.final["regret"] < 1e-4 * f0


def test_tpe_beats_random_median_regret_at_equal_evaluations():
    task = TASKS.create("ridge", seed=0, groups=4, steps=60, l2_high=3.0)
    budget = {"steps": 60 * 30}
    regrets = {
        name: [run(task, name, budget, seed=s)[0].final["regret"] for s in range(5)]
        for name in ("tpe", "random")
    }
    assert np.median(regrets["tpe"]) < np.median(regrets["random"])


@pytest.mark.parametrize("strategy", ALL)
def test_every_strategy_records_a_finite_regret_and_stops_exactly_at_a_step_budget(strategy):
    task = TASKS.create("ridge", seed=0, **RIDGE)
    steps = 60 * 5 + 7  # not a multiple of any unit of work: no unit may overrun it
    recorder, budget = run(task, strategy, {"steps": steps})
    assert np.isfinite(recorder.final.get("regret", task.regret(recorder.final["val_loss"])))
    assert recorder.points and all(p["inner_steps"] <= steps for p in recorder.points)
    if strategy in ("default", "rtho", "rtho-nt", "truncated-online"):
        assert budget.steps_used == 60  # one run of the task's T steps (RTHO's is online)
    elif strategy == "grid":
        # 5 evaluations fit: a 2 × 2 grid (3 × 2 = 6 would not).
        assert len(recorder.points) == 4 and budget.steps_used == 240
    else:
        assert steps - 60 < budget.steps_used <= steps


@pytest.mark.parametrize("strategy", ["grid", "random", "tpe", "reverse-hg", "rtho"])
def test_wall_clock_budget_overrun_is_within_one_unit_of_work(strategy):
    task = TASKS.create("ridge", seed=0, **RIDGE)
    recorder, budget = run(task, strategy, {"seconds": 1.5})
    longest_unit = max(budget.unit_seconds)
    if strategy not in ("grid", "rtho"):  # a grid or an RTHO run may end before the time is up
        # it stopped because the next unit, as long as the last, would have ended too late
        assert budget.elapsed + budget.unit_seconds[-1] > 1.5
    assert budget.overrun <= max(0.05 * 1.5, longest_unit)


COST_BUDGET = 7.5  # plain-training runs; no strategy's unit divides it


@pytest.mark.parametrize("strategy", [*ALL, "early-stopping"])
def test_no_strategy_exceeds_a_cost_budget_and_each_spends_what_it_needs(strategy):
    task = TASKS.create("ridge", seed=0, **RIDGE)
    recorder, budget = run(task, strategy, {"cost": COST_BUDGET})
    unit = budget.cost_used / budget.units
    assert 0 < budget.cost_used <= COST_BUDGET
    assert [p["cost"] for p in recorder.points] == sorted(p["cost"] for p in recorder.points)
    if strategy in ("default", "early-stopping", "rtho", "rtho-nt", "truncated-online"):
        assert budget.steps_used == 60  # one run of T steps; the rest is reported, not spent
    elif strategy == "grid":
        assert len(recorder.points) == math.prod(grid_shape(budget.units, 2))
    else:  # searches stop only when the next unit would not fit
        assert COST_BUDGET - budget.cost_used < unit


def test_cost_is_deterministic_and_blind_to_the_clock():
    task = TASKS.create("ridge", seed=0, **RIDGE)
    first = run(task, "reverse-hg", {"cost": COST_BUDGET})[0]
    again = run(TASKS.create("ridge", seed=0, **RIDGE), "reverse-hg", {"cost": COST_BUDGET})[0]
    strip = ("elapsed_s",)
    assert [{k: v for k, v in p.items() if k not in strip} for p in first.points] == [
        {k: v for k, v in p.items() if k not in strip} for p in again.points
    ]
    assert first.final == again.final


def test_ift_cg_is_charged_the_products_it_used():
    """Ridge's Hessian is diagonal, 1 + λ_g on group g's features: CG is exact after one
    product per distinct λ_g, far below its 20. At the start both groups have λ = 1 (one
    product); every later hyper-iteration has two distinct values (two)."""
    task = TASKS.create("ridge", seed=0, **RIDGE)
    _, budget = run(task, "ift-cg", {"cost": COST_BUDGET})
    costs = task.cost_model()
    assert budget.units == 6
    assert budget.flops_used == costs.ift(60, "cg", 1) + 5 * costs.ift(60, "cg", 2)
    assert costs.ift(60, "cg", 2) < costs.ift(60, "cg", 20)


def test_truncated_hg_pays_T_plus_K_steps():
    task = TASKS.create("ridge", seed=0, **RIDGE)
    _, budget = run(task, "truncated-hg", {"cost": COST_BUDGET}, truncate=10)
    costs = task.cost_model()
    assert budget.flops_used == budget.units * costs.reverse(60, truncate=10)
    assert costs.reverse(60, truncate=10) < costs.reverse(60)


def test_online_truncated_pays_delta_plus_K_steps_per_chunk_and_its_schedule_is_replayed():
    """T = 60 in chunks of Δ = 5: 11 chunks end in a hyper-step through their last K = 2 steps,
    the 12th is plain training. The replay of the λ schedule from s_0 is the online model."""
    task = TASKS.create("ridge", seed=0, **RIDGE)
    recorder, budget = run(task, "truncated-online", {"cost": 50}, delta=5, truncate=2)
    costs = task.cost_model()
    assert budget.flops_used == 11 * costs.reverse(5, truncate=2) + 5 * costs.step()
    assert recorder.final["online_steps"] == budget.steps_used == 60
    assert recorder.final["val_loss"] == pytest.approx(recorder.points[-1]["val_loss"], rel=1e-12)


def test_a_budget_below_one_unit_is_refused_with_the_smallest_workable_value():
    task = TASKS.create("ridge", seed=0, **RIDGE)
    with pytest.raises(BudgetError, match=r"below one hyper-iteration .* set cost >= 3\.\d+"):
        run(task, "reverse-hg", {"cost": 2.0})
    with pytest.raises(BudgetError, match=r"below one evaluation .* set cost >= 1\.\d+"):
        run(task, "tpe", {"cost": 0.5})


def test_grid_points_are_cell_centred_never_corners():
    log_param = HyperParam("l2", 1e-3, 10.0, default=1.0, log=True)
    assert grid_values(log_param, 2) == pytest.approx([10**-2, 10**0.0])
    assert grid_values(HyperParam("x", 0.0, 1.0, 0.5), 1) == [0.5]
    assert grid_values(HyperParam("x", 0.0, 1.0, 0.5), 4) == [0.125, 0.375, 0.625, 0.875]
    assert grid_shape(10, 2) == [3, 3] and grid_shape(12, 2) == [4, 3]
    assert grid_shape(7, 3) == [2, 2, 1] and grid_shape(1, 3) == [1, 1, 1]
    task = TASKS.create("ridge", seed=0, **RIDGE)
    recorder, _ = run(task, "grid", {"cost": 4.5})  # 4 evaluations: a 2 × 2 grid
    seen = {tuple(p["hp"].values()) for p in recorder.points}
    low, high = task.l2_low, task.l2_high
    assert len(seen) == 4
    assert all(low < value < high for point in seen for value in point)


@pytest.mark.parametrize("strategy", ["rtho", "rtho-nt"])
def test_rtho_trains_exactly_T_steps_and_its_schedule_is_retrained(strategy):
    """RTHO's answer is its λ schedule: the final protocol replays it from s_0 for the task's T
    plain steps, reproducing the online run's model (up to the jvp's rounding)."""
    task = TASKS.create("auxtarget", seed=0, **SMALL_AUX)
    recorder, budget = run(task, strategy, {"cost": 50}, delta=5, record_every=1)
    final = recorder.final
    assert final["online_steps"] == budget.steps_used == SMALL_AUX["steps"]
    online_last = recorder.points[-1]  # the online model after its last chunk
    assert final["val_loss"] == pytest.approx(online_last["val_loss"], rel=1e-9)
    assert final["test_acc"] == online_last["test_acc"]
    assert budget.cost_used < 50  # the budget it did not need is not spent


def test_rtho_schedule_replay_is_a_real_retraining():
    """The replay trains from s_0: a task whose weights start elsewhere gives another model."""
    task = TASKS.create("auxtarget", seed=0, **SMALL_AUX)
    recorder, _ = run(task, "rtho", {"cost": 50}, delta=5)
    replayed = recorder.final["val_loss"]
    original = task._params0
    task._params0 = lambda: tuple(p + 0.1 for p in original())
    schedule_hp = task.gradient_problem("rtho").hp0
    assert task.finalize_schedule(lambda t: schedule_hp)["val_loss"] != replayed


def test_early_stopping_spends_check_by_check_so_every_point_has_its_cost():
    task = TASKS.create("ridge", seed=0, **RIDGE)
    recorder, budget = run(task, "early-stopping", {"cost": 2.0}, check_every=25)
    costs = [p["cost"] for p in recorder.points]
    assert len(costs) == 2 and 0 < costs[0] < costs[1] < budget.cost_used  # 10 steps after
    assert budget.steps_used == 60 and recorder.final["stopped_at"] in (25, 50)


def test_rtho_reports_the_lambda_of_its_last_step_and_takes_no_hyper_step_after_it():
    task = TASKS.create("auxtarget", seed=0, **SMALL_AUX)
    recorder, budget = run(task, "rtho", {"cost": 50}, delta=5, record_every=1)
    assert budget.units == SMALL_AUX["steps"] // 5
    assert recorder.points[-1]["hp"] == recorder.final["config"]  # λ held since the last step
    assert len({str(p["hp"]) for p in recorder.points}) == budget.units - 1


def test_ridge_null_teacher_starts_without_regularisation():
    task = TASKS.create("ridge", seed=0, **RIDGE)
    null = task.gradient_problem("null").hp0["log_l2"].exp()
    assert torch.allclose(null, torch.full_like(null, task.l2_low), rtol=1e-12)
    a = run(task, "rtho", {"cost": 10})[0].final
    b = run(TASKS.create("ridge", seed=0, **RIDGE), "rtho-nt", {"cost": 10})[0].final
    assert a["val_loss"] != b["val_loss"]


def test_diverging_evaluations_are_failed_trials_not_crashes():
    """A region of the space where training diverges (NaN loss): those trials are recorded as
    failed and told to Optuna as such, and the search goes on to a finite incumbent."""
    task = TASKS.create("ridge", seed=0, **RIDGE)
    original = task.evaluate

    def diverges_for_small_l2(config):
        ev = original(config)
        if config["l2_0"] < 0.3:
            ev.val_loss = float("nan")
        return ev

    task.evaluate = diverges_for_small_l2
    recorder, _ = run(task, "random", {"steps": 60 * 12})
    failed = [p["failed"] for p in recorder.points]
    assert len(failed) == 12 and any(failed) and not all(failed)
    assert all(p["val_loss"] is None for p in recorder.points if p["failed"])
    assert np.isfinite(recorder.final["val_loss"])


def test_reverse_hg_cleaning_beats_baseline_on_embedded_data():
    task = TASKS.create(
        "hypercleaning",
        seed=0,
        n_train=500,
        n_val=500,
        n_test=1000,
        n_corrupt=250,
        radius=250.0,
        steps=50,
        final_steps=200,
    )
    recorder, _ = run(task, "reverse-hg", {"cost": 40})
    final = recorder.final
    assert final["test_acc"] > final["rows"]["Baseline"]["test_acc"]
    assert final["f1"] > 0.5


THIRD_PARTY = '''
from hobench.strategies.base import Strategy, priced


class Constant(Strategy):
    """Evaluates the task's defaults as often as the budget allows."""

    def __init__(self, repeats: int = 2) -> None:
        self.repeats = repeats

    def run(self, task, budget, rng, recorder):
        config = task.default_config()
        costs = priced(task, budget)
        unit, steps = costs.evaluation(), task.steps_per_evaluation()
        for _ in range(self.repeats):
            if not budget.fits(unit, steps):
                break
            ev = task.evaluate(config)
            budget.spend(unit, steps)
            recorder.point(config, ev.val_loss, ev.val_acc, ev.test_acc)
        budget.stop()
        recorder.finish(config=config, **task.finalize_config(config))
'''


def make_third_party_package(root):
    """A package 'installed' the way pip installs one: a module and a .dist-info directory
    whose entry_points.txt registers the strategy under hobench.strategies."""
    (root / "thirdparty_strategy.py").write_text(THIRD_PARTY)
    info = root / "thirdparty_strategy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: thirdparty-strategy\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[hobench.strategies]\nconstant = thirdparty_strategy:Constant\n"
    )


def test_third_party_strategy_registered_by_entry_point(tmp_path, monkeypatch):
    make_third_party_package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    # A registry that has not looked at entry points yet, as in a fresh process.
    registry = Registry("strategy", "hobench.strategies", "hobench.strategies")
    assert "constant" in registry.names()
    task = TASKS.create("ridge", seed=0, **RIDGE)
    budget = Budget(steps=600).start()
    recorder = Recorder(budget)
    registry.create("constant", repeats=3).run(task, budget, np.random.default_rng(0), recorder)
    assert len(recorder.points) == 3 and np.isfinite(recorder.final["regret"])


def test_third_party_strategy_runs_in_a_suite(tmp_path):
    make_third_party_package(tmp_path)
    suite = tmp_path / "third.toml"
    suite.write_text(
        textwrap.dedent("""
        seeds = [0]
        [budget]
        steps = 120
        [[tasks]]
        kind = "ridge"
        groups = 2
        steps = 60
        [[strategies]]
        kind = "constant"
    """)
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hobench",
            "run",
            str(suite),
            "--quiet",
            "--results-dir",
            str(tmp_path / "results"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "results" / "runs.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    assert len(lines) == 1 and record["status"] == "ok" and record["strategy_kind"] == "constant"
    assert len(record["trajectory"]) == 2  # repeats=2 by default


@pytest.mark.parametrize("strategy", ["reverse-hg", "forward-hg", "rtho"])
def test_compile_parameter_reaches_the_engine(strategy, monkeypatch):
    """`compile = true` asks the engine for its compiled path; the default, None, leaves it to
    the suite. HOBENCH_COMPILE=0 keeps this test from compiling: it checks the request, not
    the compiler (tests/test_hypergrad_compiled.py does)."""
    from hobench.strategies import gradient

    monkeypatch.setenv("HOBENCH_COMPILE", "0")
    asked = []

    def spy(real):
        def call(*args, **kwargs):
            asked.append(kwargs["compile"])
            return real(*args, **kwargs)

        return call

    for name in ("reverse", "forward", "ForwardState"):
        monkeypatch.setattr(gradient, name, spy(getattr(gradient, name)))
    task = TASKS.create("ridge", seed=0, **dict(RIDGE, steps=20))
    run(task, strategy, {"steps": 20}, compile=True)
    assert asked and all(asked)
    assert STRATEGIES.create(strategy).compile is None


GRADIENT = ["reverse-hg", "forward-hg", "rtho", "rtho-nt", "truncated-hg", "truncated-online",
            "ift-cg", "ift-neumann"]  # fmt: skip


@pytest.mark.parametrize("strategy", ["random", *GRADIENT])
@pytest.mark.parametrize("suite_compiles", [False, True])
def test_a_cell_compiles_what_its_suite_says(strategy, suite_compiles, monkeypatch):
    """A suite's `compile` (true by default) puts its gradient strategies on the compiled path
    and nothing else (the search's training, the tasks' final protocol stay eager); false keeps
    the whole cell eager. The record says which path ran."""
    from hobench.harness.cell import run_cell
    from hobench.harness.suite import Cell
    from hobench.hypergrad import compiled

    monkeypatch.delenv(compiled.ENV, raising=False)
    asked: list = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: asked.append(fn) or fn)
    cell = Cell(
        "ridge", "ridge", RIDGE, strategy, strategy, {}, 0, {"cost": 10}, "cpu",
        compile=suite_compiles,
    )  # fmt: skip
    record = run_cell(cell, "q", None, {})
    assert record["status"] == "ok", record["error"]
    runs_compiled = suite_compiles and strategy != "random"
    assert bool(asked) == runs_compiled and record["compile"] == runs_compiled
    assert (record["resources"]["compile_s"] > 0) == runs_compiled
    assert not compiled.use_compiled(None)  # the suite's choice ends with its cell


def test_a_compiled_cell_records_its_compile_seconds_apart(monkeypatch):
    """`compile = true`: the first call of each compiled function (the compile, here stood in
    for by a sleep) is in the record as compile_s, inside wall_s."""
    from hobench.harness.cell import run_cell
    from hobench.harness.suite import Cell
    from hobench.hypergrad import compiled

    monkeypatch.delenv(compiled.ENV, raising=False)

    def slow_compile(fn, **kwargs):
        def first_call_compiles(*args):
            if not calls:
                time.sleep(0.2)
            calls.append(1)
            return fn(*args)

        return first_call_compiles

    calls: list = []
    monkeypatch.setattr(torch, "compile", slow_compile)
    params = {"compile": True}
    cell = Cell("ridge", "ridge", RIDGE, "reverse-hg", "reverse-hg", params, 0, {"cost": 4}, "cpu")
    resources = run_cell(cell, "q", None, {})["resources"]
    assert 0.2 <= resources["compile_s"] < resources["wall_s"]
