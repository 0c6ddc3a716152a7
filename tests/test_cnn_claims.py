"""Every ordering docs/models.md states about the committed CNN suite (results/cnn), checked on
those results with the statistics the report prints, and the tuning that chose the CNN tasks'
hyper-step sizes (results/tune-cnn)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hobench.registry import TASKS
from hobench.report.load import load_runs
from hobench.report.stats import ALPHA, friedman, nemenyi, paired_vs_best, rank_sets

RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.fixture(scope="module")
def runs():
    frame = load_runs(RESULTS / "cnn")
    assert (frame["status"] == "ok").all()
    assert frame.groupby(["task", "strategy"]).size().eq(5).all()  # 5 paired seeds each
    return frame


def test_on_cnn_wd_reverse_hg_has_the_best_mean_and_five_seeds_separate_nothing(runs):
    tests = paired_vs_best(runs[runs["task"] == "cnn-wd"])
    assert tests.index[tests["best"]].tolist() == ["reverse-hg"]
    assert not tests["worse"].any()  # two-sided Wilcoxon over 5 seeds: p >= 0.0625


def test_on_cnn_clean_the_gradient_strategies_keep_every_example_and_equal_the_baseline(runs):
    clean = runs[runs["task"] == "cnn-clean"]
    for strategy, iterations in (("reverse-hg", 4), ("ift-cg", 13)):
        cells = clean[clean["strategy"] == strategy]
        assert cells["n_points"].eq(iterations).all()  # one point per hyper-iteration
        assert (cells["final.kept"] == 500).all()
        baseline = [rows["Baseline"]["test_acc"] for rows in cells["final.rows"]]
        assert cells["final.test_acc"].tolist() == baseline
    random = clean[clean["strategy"] == "random"]
    baseline = [rows["Baseline"]["test_acc"] for rows in random["final.rows"]]
    assert (random["final.test_acc"].to_numpy() > baseline).all()


def test_across_both_tasks_random_ranks_first_and_ift_cg_last_apart_from_it(runs):
    shared, _ = rank_sets(runs)
    assert shared.tasks == ["cnn-wd", "cnn-clean"]
    assert friedman(shared.blocks)[1] < ALPHA
    result = nemenyi(shared)
    ranks = result.rankdf["meanrank"].sort_values()
    assert ranks.index[0] == "random" and ranks.index[-1] == "ift-cg"
    assert ranks["ift-cg"] - ranks["random"] > result.cd
    assert ranks["reverse-hg"] - ranks["random"] < result.cd


def test_the_cnn_tasks_hyper_steps_are_the_tuning_runs_lowest():
    """Each default is the candidate of suites/tune-cnn.toml with the lowest final validation
    loss on seed 100 (Reverse-HG's hyper_lr per task, RTHO's online_hyper_lr on cnn-wd)."""
    frame = load_runs(RESULTS / "tune-cnn")
    chosen = {}
    for (task, family), cells in frame.groupby(
        [frame["task"], frame["strategy"].str.rpartition("-")[0]]
    ):
        best = cells.loc[cells["final.val_loss"].idxmin(), "strategy"]
        chosen[(task, family)] = float(best.rpartition("-")[2])
    assert chosen[("cnn-wd", "reverse-hg")] == TASKS.parameters("cnn-wd")["hyper_lr"]
    assert chosen[("cnn-clean", "reverse-hg")] == TASKS.parameters("cnn-clean")["hyper_lr"]
    assert chosen[("cnn-wd", "rtho")] == TASKS.parameters("cnn-wd")["online_hyper_lr"]
