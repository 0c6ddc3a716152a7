"""Strategies under one budget, scored on ridge (known λ*) and hyper-cleaning; all seeded."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hobench.harness.budget import Budget
from hobench.harness.recorder import Recorder
from hobench.registry import STRATEGIES, TASKS, Registry

# A small, well-conditioned ridge: λ* = (0.37, 1.26), interior; T = 60 trains to convergence.
RIDGE = dict(groups=2, steps=60, l2_high=3.0)
ALL = [
    "default",
    "grid",
    "random",
    "tpe",
    "qmc",
    "gp",
    "reverse-hg",
    "forward-hg",
    "rtho",
    "rtho-nt",
]


def run(task, strategy, budget, seed=0, **strategy_params):
    budget = Budget(**budget).start()
    recorder = Recorder(budget)
    STRATEGIES.create(strategy, **strategy_params).run(
        task, budget, np.random.default_rng(seed), recorder
    )
    return recorder, budget


@pytest.mark.parametrize("strategy", ["reverse-hg", "forward-hg"])
def test_gradient_strategies_reach_the_ridge_optimum(strategy):
    task = TASKS.create("ridge", seed=0, **RIDGE)
    recorder, _ = run(task, strategy, {"steps": 60 * 40}, hyper_lr=0.3)
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
    unit = 10 if strategy.startswith("rtho") else 60  # RTHO moves in Δ = 10 steps
    if strategy == "default":
        assert budget.steps_used == 60
    elif strategy == "grid":
        # 5 evaluations fit: 2 points per dimension, and the 2×2 grid ends the search.
        assert len(recorder.points) == 4 and budget.steps_used == 240
    else:
        assert steps - unit < budget.steps_used <= steps


@pytest.mark.parametrize("strategy", ["grid", "random", "tpe", "reverse-hg", "rtho"])
def test_wall_clock_budget_overrun_is_within_one_unit_of_work(strategy):
    task = TASKS.create("ridge", seed=0, **RIDGE)
    recorder, budget = run(task, strategy, {"seconds": 1.5})
    times = [0.0] + [p["elapsed_s"] for p in recorder.points]
    longest_unit = max(np.diff(times))
    if strategy != "grid":  # a grid may be complete before the time is up
        assert budget.elapsed >= 1.5
    assert budget.overrun <= max(0.05 * 1.5, longest_unit)


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
        hyper_lr=0.1,
    )
    recorder, _ = run(task, "reverse-hg", {"steps": 50 * 40})
    final = recorder.final
    assert final["test_acc"] > final["rows"]["Baseline"]["test_acc"]
    assert final["f1"] > 0.5


THIRD_PARTY = '''
from hobench.strategies.base import Strategy


class Constant(Strategy):
    """Evaluates the task's defaults as often as the budget allows."""

    def __init__(self, repeats: int = 2) -> None:
        self.repeats = repeats

    def run(self, task, budget, rng, recorder):
        config = task.default_config()
        for _ in range(self.repeats):
            if not budget.fits(task.steps_per_evaluation()):
                break
            ev = task.evaluate(config)
            budget.spend(task.steps_per_evaluation())
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
