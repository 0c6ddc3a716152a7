"""The report's figures: anytime curves to each budget's end, memory as the cell's own, the
performance profile's ratios, and no text drawn over other text or a legend over the axes."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from hobench.report import load_runs, load_trajectories
from hobench.report.plots import (
    anytime_curve,
    anytime_figure,
    median_ci,
    memory_figure,
    pareto_figure,
    pareto_front,
    performance_profile,
    performance_profile_figure,
    performance_ratios,
    plain_number,
)
from tests.report_fixture import BUDGET_COST, WITH_DEFAULT, make_records, write_runs


def overlapping_texts(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose boxes intersect, legends that intersect an axes, and texts or
    legends cut off at the figure's edge."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    hidden: set[int] = set()
    for ax in fig.axes:
        if not ax.get_visible():
            hidden |= {id(text) for text in ax.findobj(Text)}
        for axis in (ax.xaxis, ax.yaxis):
            drawn = {id(tick) for tick in axis._update_ticks()}  # ticks within the view
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if id(tick) not in drawn:
                    hidden |= {id(tick.label1), id(tick.label2)}
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    for legend in legends:  # a legend's own texts are inside its box, checked as one
        hidden |= {id(text) for text in legend.findobj(Text)}
    texts = [
        text
        for text in fig.findobj(Text)
        if text.get_visible() and text.get_text().strip() and id(text) not in hidden
    ]
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in texts]
    boxes += [("legend", legend.get_window_extent(renderer)) for legend in legends]
    boxes += [("axes", ax.get_window_extent(renderer)) for ax in fig.axes if ax.get_visible()]

    def meet(a, b) -> bool:  # more than a pixel of common area
        return min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1

    page = fig.bbox
    pairs = [
        (name, "outside the figure")
        for name, box in boxes
        if box.x0 < page.x0 - 1
        or box.x1 > page.x1 + 1
        or box.y0 < page.y0 - 1
        or box.y1 > page.y1 + 1
    ]
    for (name_a, a), (name_b, b) in itertools.combinations(boxes, 2):
        if "axes" in (name_a, name_b) and "legend" not in (name_a, name_b):
            continue  # texts inside axes (tick labels outside, "not recorded" inside) are fine
        if meet(a, b):
            pairs.append((name_a, name_b))
    return pairs


def test_overlap_check_sees_collisions() -> None:
    # The check itself can fail: crowded tick labels, a legend inside the axes, a cut-off text.
    fig = Figure(figsize=(2.0, 2.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([50_000, 1_000_000], [0, 1], label="a line")
    ax.set_xticks(np.arange(50_000, 1_000_001, 50_000))
    ax.xaxis.set_major_formatter("{x:g}")
    ax.legend()
    fig.text(0.9, 0.5, "cut off at the edge")
    pairs = overlapping_texts(fig)
    assert ("50000", "100000") in pairs and ("legend", "axes") in pairs
    assert ("cut off at the edge", "outside the figure") in pairs


def _fixture(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    results = write_runs(tmp_path, make_records(strategies=WITH_DEFAULT))
    runs, points = load_runs(results), load_trajectories(results)
    # `default` evaluates once: keep only its first trajectory point, as real records have.
    single = (points["strategy"] == "default") & (points["point"] > 0)
    return runs, points[~single]


def test_anytime_curve_holds_a_single_point_to_the_end() -> None:
    xs, median, q25, q75 = anytime_curve([(np.array([2.0]), np.array([0.5]), 10.0)])
    np.testing.assert_array_equal(xs, [2.0, 10.0])
    np.testing.assert_array_equal(median, [0.5, 0.5])
    # Two seeds: the median starts where both have an incumbent and holds past the earlier end.
    xs, median, _, _ = anytime_curve(
        [
            (np.array([1.0, 3.0]), np.array([0.8, 0.2]), 4.0),
            (np.array([2.0]), np.array([0.6]), 5.0),
        ]
    )
    np.testing.assert_array_equal(xs, [2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(median, [0.7, 0.4, 0.4, 0.4])


def test_anytime_figure_draws_every_strategy_to_its_budget(tmp_path: Path) -> None:
    runs, points = _fixture(tmp_path)
    assert (points[points["strategy"] == "default"].groupby("cell").size() == 1).all()
    fig = anytime_figure(runs, points, "auxtarget")
    wall_ax, cost_ax = fig.axes[:2]
    # One step line per strategy, the single-point `default` included.
    cost_lines = [line for line in cost_ax.get_lines() if line.get_drawstyle() == "steps-post"]
    assert len(cost_lines) == len(WITH_DEFAULT)
    for line in cost_lines:
        assert line.get_xdata()[-1] == BUDGET_COST  # each runs to the cost budget
    default = cost_lines[WITH_DEFAULT.index("default")]
    xs, ys = default.get_xdata(), default.get_ydata()
    assert xs[0] < xs[-1] and len(set(ys)) == 1  # a flat line, not a lone point
    wall_ends = runs[(runs["task"] == "auxtarget") & (runs["strategy"] == "default")]
    steps = [line for line in wall_ax.get_lines() if line.get_drawstyle() == "steps-post"]
    assert steps[0].get_xdata()[-1] == wall_ends["resources.wall_s"].max()
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels == [f"{s} (n=3)" for s in WITH_DEFAULT]
    assert overlapping_texts(fig) == []


def test_the_median_band_is_a_seeded_bootstrap_of_the_median() -> None:
    curves = np.array([[1.0, 4.0], [2.0, 4.0], [3.0, 4.0], [10.0, 4.0]])
    low, high = median_ci(curves)
    again = median_ci(curves)
    np.testing.assert_array_equal(low, again[0])  # the same band on every rebuild
    assert low[0] <= np.median(curves[:, 0]) <= high[0] and high[0] <= 10.0
    assert low[1] == high[1] == 4.0  # seeds that agree: no band


def test_the_anytime_figure_adds_test_accuracy_where_the_tables_rank_by_it(tmp_path) -> None:
    runs, points = _fixture(tmp_path)
    fig = anytime_figure(runs, points, "auxtarget")
    labels = [ax.get_ylabel() for ax in fig.axes]
    if points["incumbent_test_acc"].notna().any():
        assert len(fig.axes) == 4 and labels[2:] == ["incumbent test accuracy (%)"] * 2
    else:
        assert len(fig.axes) == 2
    assert overlapping_texts(fig) == []


def test_the_pareto_front_is_what_nothing_beats_on_both_cost_and_score() -> None:
    points = pd.DataFrame(
        {"cost": [1.0, 1.05, 6.0, 15.0, 15.0], "score": [0.7, 0.7, 0.02, 0.03, 0.2]},
        index=["default", "early", "rtho", "reverse", "random"],
    )
    # lower is better: early costs more for the same score; reverse and random cost more than
    # rtho for a worse score
    assert pareto_front(points, higher=False) == ["default", "rtho"]
    assert pareto_front(points.assign(score=-points["score"]), higher=True) == ["default", "rtho"]


def test_the_pareto_figure_has_a_panel_per_task(tmp_path: Path) -> None:
    runs, _ = _fixture(tmp_path)
    fig = pareto_figure(runs)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == [f"task {t}" for t in pd.unique(runs["task"])]
    assert overlapping_texts(fig) == []


def test_plain_number_ticks_stay_short() -> None:
    assert [plain_number(v) for v in (0.05, 2, 500, 50_000, 100_000, 2e6)] == [
        "0.05",
        "2",
        "500",
        "50k",
        "100k",
        "2M",
    ]


def _block_runs() -> pd.DataFrame:
    # Task "acc": test errors 0.125, 0.25, 0.5 (seed 0; binary-exact, so are the ratios); seed 1
    # has one strategy, so it is no block.
    # Task "reg" reports regret: 0.0 and 0.5 (seed 0), 0.02 and 0.01 (seed 1).
    rows = [
        ("acc", 0, "a", 0.875, None),
        ("acc", 0, "b", 0.75, None),
        ("acc", 0, "c", 0.5, None),
        ("acc", 1, "a", 0.7, None),
        ("reg", 0, "a", None, 0.0),
        ("reg", 0, "b", None, 0.5),
        ("reg", 1, "a", None, 0.02),
        ("reg", 1, "b", None, 0.01),
    ]
    frame = pd.DataFrame(
        rows, columns=["task", "seed", "strategy", "final.test_acc", "final.regret"]
    )
    return frame.assign(status="ok").astype({"final.test_acc": float, "final.regret": float})


def test_performance_ratios_and_profile_exact() -> None:
    ratios = performance_ratios(_block_runs())
    got = {(r.task, r.seed, r.strategy): r.ratio for r in ratios.itertuples()}
    assert got.keys() == {
        ("acc", 0, "a"),
        ("acc", 0, "b"),
        ("acc", 0, "c"),
        ("reg", 0, "a"),
        ("reg", 0, "b"),
        ("reg", 1, "a"),
        ("reg", 1, "b"),
    }
    assert math.isclose(got["acc", 0, "a"], 1.0) and math.isclose(got["acc", 0, "b"], 2.0)
    assert math.isclose(got["acc", 0, "c"], 4.0)
    assert got["reg", 0, "a"] == 1.0 and got["reg", 0, "b"] == math.inf  # best regret is 0
    assert got["reg", 1, "a"] == 2.0 and got["reg", 1, "b"] == 1.0
    profile = performance_profile(ratios, np.array([1.0, 1.5, 2.0, 4.0, 1e9]))
    np.testing.assert_allclose(profile["a"], [2 / 3, 2 / 3, 1, 1, 1])  # 3 blocks
    np.testing.assert_allclose(profile["b"], [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])  # inf never
    np.testing.assert_allclose(profile["c"], [0, 0, 0, 1, 1])  # the one block it ran in
    fig = performance_profile_figure(_block_runs())
    assert "3 task-seed blocks" in fig._suptitle.get_text()
    assert overlapping_texts(fig) == []


def test_memory_figure_uses_added_rss(tmp_path: Path) -> None:
    records = make_records()
    for index, record in enumerate(records):
        record["resources"]["added_rss_mb"] = 10.0 + index
    runs = load_runs(write_runs(tmp_path, records))
    fig = memory_figure(runs)
    assert all(ax.get_xlabel() == "peak RSS added by the cell (MB)" for ax in fig.axes)
    # The x axis covers the added memory (tens of MB), not the whole process (hundreds).
    assert all(ax.get_xlim()[1] < 100 for ax in fig.axes)
    assert overlapping_texts(fig) == []
    # Older records without it fall back to the whole process, and say so.
    fig = memory_figure(load_runs(write_runs(tmp_path / "old", make_records())))
    assert all("whole worker process" in ax.get_xlabel() for ax in fig.axes)


def test_no_memory_figure_where_every_strategy_adds_the_same(tmp_path: Path) -> None:
    records = make_records()
    for record in records:
        record["resources"]["added_rss_mb"] = 75.6  # the data, the same for every strategy
    assert memory_figure(load_runs(write_runs(tmp_path / "same", records))) is None
    records[0]["resources"]["added_rss_mb"] = 235.0  # one strategy's cell stores more
    assert memory_figure(load_runs(write_runs(tmp_path / "differs", records))) is not None
