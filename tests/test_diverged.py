"""A search whose every unit diverged says so, instead of blaming the budget."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hobench.harness.cell import run_cell
from hobench.harness.failures import FINAL_DIVERGED, Diverged
from hobench.harness.suite import Cell, load_suite
from hobench.registry import TASKS
from hobench.tasks.base import HyperParam
from hobench.tasks.knob import single_value_references
from tests import harness_toys

FIX = "lower the learning-rate range"


@TASKS.register("toy-diverging")
class ToyDiverging(harness_toys.ToyLinear):
    """toy-linear with a step size range where gradient descent blows up to inf within 10 steps."""

    LR_RANGE = (1e30, 1e31)

    def space(self) -> list[HyperParam]:
        return [HyperParam("lr", *self.LR_RANGE, default=2e30, log=True)]


def diverging_cell(strategy: str, **params) -> Cell:
    budget = {"cost": 6.0, "seconds": None, "steps": None}
    task = {"steps": 300}
    return Cell("d", "toy-diverging", task, strategy, strategy, params, 0, budget, "cpu")


@pytest.mark.parametrize(
    "strategy, params, message",
    [
        ("random", {}, "all 5 evaluations diverged (non-finite validation loss)"),
        ("grid", {}, "all 5 evaluations diverged (non-finite validation loss)"),
        ("asha", {}, "all 156 trials diverged (non-finite validation loss)"),
        (
            "reverse-hg",
            {},
            "all 1 hyper-iteration diverged (non-finite hypergradient or loss)",
        ),
    ],
)
def test_a_search_whose_every_unit_diverged_is_failed_with_that_reason(strategy, params, message):
    record = run_cell(diverging_cell(strategy, **params), "toys", None, {})
    assert record["status"] == "failed"
    assert record["error"] == f"{message}; {FIX}"
    assert record["trajectory"] and all(point["failed"] for point in record["trajectory"])


def test_a_budget_too_small_for_one_unit_is_still_the_budgets_fault():
    cell = diverging_cell("random")
    cell.budget["cost"] = 0.5
    record = run_cell(cell, "toys", None, {})
    assert record["status"] == "failed" and "diverged" not in record["error"]


def test_a_reference_grid_that_diverges_everywhere_is_one_line_not_min_of_empty():
    with pytest.raises(Diverged) as error:
        single_value_references({"k": 1}, lambda value: math.nan, 1.0, [0.1, 0.2, 0.3])
    assert str(error.value) == (
        f"all 3 reference-grid values diverged (non-finite validation loss); {FIX}"
    )


# A valid but diverging suite (the malformed corpus, tests/test_suite.py::MALFORMED, holds the
# suites the validator refuses): it passes the validator, yet every step size in its
# range overflows a real model (a residual CNN with BatchNorm) within four steps.
DIVERGING_SUITE = """
name = "diverging"
seeds = [0]
device = "cpu"
threads = 1
compile = false
[budget]
cost = 5
[[tasks]]
kind = "module"
model = "resnet"
model_args = {width = 4, stages = 1}
n_train = 40
n_val = 20
n_test = 20
batch_size = 20
steps = 4
tune = ["lr"]
lr_low = 1e30
lr_high = 1e35
lr = 1e32
"""
# strategy → the reason its cell must give, given the number of points it recorded
DIVERGING_REASONS = {
    "default": lambda n: FINAL_DIVERGED,  # plain training on the defaults: only the final run
    "random": lambda n: f"all {n} evaluations diverged (non-finite validation loss); {FIX}",
    "reverse-hg": lambda n: (
        f"all {n} hyper-iteration{'s' * (n > 1)} diverged (non-finite hypergradient or loss); {FIX}"
    ),
    "rtho": lambda n: FINAL_DIVERGED,  # one online run: its replay is what diverges
}


def test_a_valid_suite_whose_every_run_diverges_on_a_real_model_fails_each_cell_with_why(
    tmp_path: Path,
) -> None:
    strategies = "".join(f'[[strategies]]\nkind = "{kind}"\n' for kind in DIVERGING_REASONS)
    suite_file = tmp_path / "diverging.toml"
    suite_file.write_text(DIVERGING_SUITE + strategies)
    suite = load_suite(suite_file)
    for cell in suite.cells():
        record = run_cell(cell, suite.name, None, {})
        points = len(record["trajectory"])
        assert record["status"] == "failed", cell.strategy_id
        assert record["error"] == DIVERGING_REASONS[cell.strategy_id](points), cell.strategy_id
