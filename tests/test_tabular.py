"""scikit-learn's shipped tables (breast cancer, diabetes) and the tabulardecay task on them:
the readers, exact hypergradients in float64, the knob's meaning, bad parameters refused in one
line, and every strategy family runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hobench.data import DataError, load_breast_cancer, load_diabetes, load_digits, packaged
from hobench.domains import ParamError, check
from hobench.harness.budget import Budget
from hobench.harness.recorder import Recorder
from hobench.registry import STRATEGIES, TASKS
from hobench.report.crossover import crossover_axes
from hobench.report.load import load_runs, runs_frame
from hobench.report.plots import performance_ratios
from hobench.report.stats import ALPHA, friedman, paired_vs_best, rank_sets, score_metric
from hobench.report.tables import task_table
from tests.test_hypergrad import check_against_fd
from tests.test_knob_tasks import BUILT_IN, as_problem

TINY = dict(n_train=40, n_val=30, n_test=50, steps=6)
FEATURES = {"breast_cancer": 30, "diabetes": 10}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny problems: two threads only contend on a loaded 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_breast_cancer_is_569_tumours_by_30_measurements_with_binary_labels():
    X, y = load_breast_cancer()
    assert X.shape == (569, 30) and X.dtype == np.float64 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [212, 357]  # malignant, benign
    assert np.isfinite(X).all() and (X >= 0).all()  # raw measurements: sizes and counts


def test_diabetes_is_442_patients_by_10_raw_variables_and_a_numeric_target():
    X, y = load_diabetes()
    assert X.shape == (442, 10) and X.dtype == np.float64
    assert y.shape == (442,) and y.dtype == np.float64 and 25 <= y.min() < y.max() <= 346
    assert set(np.unique(X[:, 1])) == {1.0, 2.0}  # sex, unscaled


@pytest.mark.parametrize("loader", [load_breast_cancer, load_diabetes, load_digits])
def test_without_scikit_learn_the_readers_say_so_in_one_line(monkeypatch, loader):
    monkeypatch.setattr(packaged.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install scikit-learn") as error:
        loader()
    assert "\n" not in str(error.value)


def test_a_missing_file_inside_scikit_learn_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv(packaged.EMBEDDED_DIR_ENV, str(tmp_path))  # a folder without the file
    with pytest.raises(DataError, match="is missing; reinstall the package") as error:
        load_diabetes()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "data, groups", [("breast_cancer", 1), ("breast_cancer", 30), ("diabetes", 3)]
)
def test_hypergradient_matches_finite_differences_and_forward_matches_reverse(data, groups):
    task = TASKS.create("tabulardecay", seed=3, data=data, groups=groups, **TINY)
    problem = as_problem(task)
    # A point away from the defaults, so no two groups share a λ.
    value = problem.hp["log_l2"]
    problem.hp = {"log_l2": value + torch.linspace(-1.0, 1.0, groups, dtype=value.dtype)}
    fwd, rev = check_against_fd(problem, task.steps)
    assert fwd.grad["log_l2"].shape == (groups,)
    assert rev.grad["log_l2"].abs().min() > 0  # every group moves f


@pytest.mark.parametrize("data", ["breast_cancer", "diabetes"])
def test_every_m_shares_the_m_equals_1_problem_and_the_paths_agree(data):
    """Every λ_g equal trains the same weights at every m; evaluate (Task.training, step by
    step) and finalize (the unrolled run gradient strategies end with) agree bit for bit."""
    losses = []
    for groups in (1, 4, FEATURES[data]):
        task = TASKS.create("tabulardecay", seed=1, data=data, groups=groups, **TINY)
        ev = task.evaluate({f"l2_{g}": 0.05 for g in range(groups)})
        final = task.finalize({"log_l2": task._log_l2([0.05] * groups)})
        assert final["val_loss"] == ev.val_loss and final["test_acc"] == ev.test_acc
        losses.append(ev.val_loss)
    assert losses[0] == pytest.approx(losses[1], rel=1e-12) == losses[2]


def test_splits_and_standardisation_use_the_training_split_only():
    task = TASKS.create("tabulardecay", seed=5, data="diabetes", **TINY)
    X, y = task.train
    assert torch.allclose(X[:, :-1].mean(0), torch.zeros(10, dtype=X.dtype), atol=1e-12)
    assert float(y.mean()) == pytest.approx(0, abs=1e-12) and (X[:, -1] == 1).all()
    assert len(task.test[1]) == 50
    rest = TASKS.create("tabulardecay", seed=5, data="breast_cancer", n_train=40, n_val=30)
    assert len(rest.test[1]) == 569 - 70 and set(rest.test[1].tolist()) == {0.0, 1.0}
    other = TASKS.create("tabulardecay", seed=6, data="diabetes", **TINY)
    assert not torch.equal(task.val[1], other.val[1])  # a seed is one split


def test_metrics_are_accuracy_for_breast_cancer_and_test_mse_for_diabetes():
    cancer = TASKS.create("tabulardecay", seed=0, data="breast_cancer", **TINY)
    ev = cancer.evaluate(cancer.default_config())
    assert 0.5 < ev.test_acc <= 1 and 0.5 < ev.val_acc <= 1 and "test_mse" not in ev.extra
    diabetes = TASKS.create("tabulardecay", seed=0, data="diabetes", **TINY)
    ev = diabetes.evaluate(diabetes.default_config())
    assert ev.test_acc is None and 0 < ev.extra["test_mse"] < 2
    assert ev.extra["crossover"]["m"] == 1 and ev.extra["crossover"]["T"] == 6


@pytest.mark.parametrize(
    "params, problem",
    [
        (dict(data="diabetes", groups=11), "groups: 11 > the 10 features of 'diabetes'"),
        (dict(data="breast_cancer", groups=31), "groups: 31 > the 30 features"),
        (dict(data="iris"), "data: unknown value 'iris'"),
        (dict(data="diabetes", n_train=300, n_val=142), "leaves 0 of the 442 examples"),
        (dict(data="diabetes", n_test=300), "short of n_test = 300"),
        (dict(l2_default=100.0), "l2_default: not l2_low <= l2_default <= l2_high"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(params, problem):
    with pytest.raises(ParamError, match=problem) as error:
        TASKS.create("tabulardecay", **params)
    assert "\n" not in str(error.value)


def test_the_suite_validator_names_an_unknown_table_before_any_cell():
    # The validator checks domains before check_params, which indexes the table.
    with pytest.raises(ParamError, match="data: unknown value 'iris'; use one of 'breast_cancer'"):
        check(TASKS.get("tabulardecay"), {"data": "iris", "groups": 1})


REFUSED = {"hd-lr": "searches none"}  # weight decays only: no learning rate to adapt
# One strategy of each family (the whole matrix takes twice as long; test_knob_tasks runs it on
# the other knob tasks): a reference, plain and model-based black-box search, multi-fidelity,
# gradient-based per run, forward mode, online, implicit, and the one that refuses.
FAMILIES = [
    "default",
    "random",
    "tpe",
    "asha",
    "early-stopping",
    "reverse-hg",
    "forward-hg",
    "rtho",
    "ift-cg",
    "hd-lr",
]


def test_the_families_are_built_in_strategies():
    assert set(FAMILIES) <= set(BUILT_IN)


@pytest.mark.parametrize("strategy", FAMILIES)
def test_every_strategy_runs_or_is_refused_in_one_line(strategy):
    # Breast cancer, m = 3 (forward mode's hypergradient fits the budget), T = 10 (early
    # stopping's interval); Task.training lets the multi-fidelity strategies run.
    task = TASKS.create(
        "tabulardecay", seed=0, data="breast_cancer", groups=3, **dict(TINY, steps=10)
    )
    budget = Budget(cost=8).start()
    recorder = Recorder(budget)
    run = STRATEGIES.create(strategy).run
    if strategy in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[strategy]):
            run(task, budget, np.random.default_rng(0), recorder)
        return
    run(task, budget, np.random.default_rng(0), recorder)
    assert budget.cost_used <= 8 and math.isfinite(recorder.final["val_loss"])
    assert recorder.final["crossover"]["m"] == 3


def test_the_report_judges_a_regression_task_by_its_test_mse():
    # Two strategies, four seeds: "b" has the lower test MSE on every seed.
    records = [
        {
            "schema": 1,
            "cell": f"db/{strategy}/{seed}",
            "task": "db",
            "task_kind": "tabulardecay",
            "strategy": strategy,
            "seed": seed,
            "status": "ok",
            "budget": {"cost": 20},
            "final": {"val_loss": 0.7, "test_mse": mse + 0.01 * seed},
        }
        for strategy, mse in (("a", 0.6), ("b", 0.5))
        for seed in range(4)
    ]
    runs = runs_frame(records)
    assert score_metric(runs) == ("final.test_mse", False)
    table = task_table(runs, "db")
    assert "test MSE" in table.header and "judged by test mean squared error" in table.caption
    best = table.rows[[row[0] for row in table.rows].index("b")]
    assert best[table.header.index("vs best (Holm p)")] == "best"
    ratios = performance_ratios(runs)
    assert sorted(ratios["q"].round(6)) == sorted(round(r["final"]["test_mse"], 6) for r in records)


def test_the_crossover_entry_names_its_table_so_axes_never_mix_tables():
    info = TASKS.create("tabulardecay", seed=0, data="diabetes", groups=2, **TINY).crossover()
    assert info["series"] == "diabetes" and info["m"] == 2
    assert info["single_val_loss"] <= info["default_val_loss"]
    frame = pd.DataFrame(
        {
            "series": ["tabulardecay breast_cancer"] * 2 + ["tabulardecay diabetes"] * 2,
            "task": ["bc-m1", "bc-m30", "db-m1", "db-m10"],
            "m": [1, 30, 1, 10],
            "T": [100] * 4,
        }
    )
    axes = {name: sorted(rows["task"]) for _, name, rows in crossover_axes(frame)}
    assert axes == {
        "tabulardecay breast_cancer": ["bc-m1", "bc-m30"],
        "tabulardecay diabetes": ["db-m1", "db-m10"],
    }


def test_the_readme_claims_about_the_committed_tabular_results():
    """docs/tasks.md (Notes on the tasks): on results/tabular no strategy is separated from its
    task's best (Holm, two-sided Wilcoxon over 10 paired seeds), nor in ranks across the tasks
    (Friedman)."""
    runs = load_runs(Path(__file__).resolve().parents[1] / "results" / "tabular")
    assert (runs["status"] == "ok").all() and len(runs) == 190
    for task in ("bc-m1", "bc-m30", "db-m1", "db-m10"):
        tests = paired_vs_best(runs[runs["task"] == task])
        assert not tests["worse"].any() and tests["p_holm"].min() >= 0.14, task
    assert all(friedman(ranks.blocks)[1] > ALPHA for ranks in rank_sets(runs))
