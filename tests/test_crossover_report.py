"""The crossover study in the report: targets, cost to target, axes, tables and the figure, on
records with known numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hobench.report import load_runs, load_trajectories
from hobench.report.build import write_report
from hobench.report.crossover import (
    crossover_axes,
    crossover_figure,
    crossover_frame,
    crossover_tables,
    summary,
)
from hobench.report.load import runs_frame, trajectories_frame
from hobench.report.plots import strategy_colors
from tests.report_fixture import make_records
from tests.test_plots import overlapping_texts

BUDGET = 10.0
# Defaults 1.0 and best single value 0.5 on every seed: the target is 0.5 + 0.1 * 0.5 = 0.55.
REFERENCES = {"default_val_loss": 1.0, "single_val_loss": 0.5, "single_value": 0.01}
# Per strategy: (cost of each point, incumbent validation loss at each point) of seed 0; seed s
# adds SEED_OFFSET[s] to every loss (no loss lands on the target itself).
RUNS = {
    "random": ([1, 2, 3, 4, 5, 6, 7, 8], [0.9, 0.8, 0.54, 0.54, 0.5, 0.5, 0.5, 0.5]),
    "reverse-hg": ([3, 6, 9], [1.0, 0.53, 0.3]),
    "forward-hg": ([4, 8], [1.0, 0.7]),
    "ift-cg": ([2, 4, 6], [1.0, 0.52, 0.4]),
}
SEED_OFFSET = (0.0, 0.004, 0.03)


def _record(task, kind, strategy, seed, m, T):
    costs, losses = RUNS[strategy]
    if kind == "fd" and strategy == "random" and m == 100:
        losses = [0.9] * len(costs)  # random search never reaches the target at m = 100
    if kind == "lr" and strategy == "ift-cg":
        losses = [1.0] * len(costs)  # as on lrschedule: no hypergradient for step sizes
    losses = [loss + SEED_OFFSET[seed] for loss in losses]
    trajectory = [
        {
            "elapsed_s": float(i),
            "inner_steps": T * (i + 1),
            "cost": float(c),
            "val_loss": loss,
            "incumbent_val_loss": loss,
            "failed": False,
            "hp": {},
        }
        for i, (c, loss) in enumerate(zip(costs, losses, strict=True))
    ]
    unit = {"random": 1.0, "reverse-hg": 3.0, "forward-hg": 2.0 * m, "ift-cg": 1.5}[strategy]
    return {
        "schema": 1,
        "suite": "crossover-test",
        "cell": f"{task}/{strategy}/{seed}",
        "task": task,
        "task_kind": kind,
        "strategy": strategy,
        "strategy_kind": strategy,
        "seed": seed,
        "status": "ok",
        "error": None,
        "budget": {"cost": BUDGET, "seconds": None, "steps": None},
        "trajectory": trajectory,
        "final": {
            "val_loss": losses[-1],
            "crossover": {"m": m, "T": T, "state_mb": 0.5, **REFERENCES},
        },
        "resources": {
            "wall_s": 1.0,
            "cost": float(costs[-1]),
            "units": len(costs),
            "unit_cost": unit,
            "added_rss_mb": 10.0 + (0.5 * T if strategy == "reverse-hg" else 0.0),
        },
        "manifest": {},
    }


def records():
    out = []
    for m in (1, 10, 100):
        for strategy in RUNS:
            if strategy == "forward-hg" and m == 100:
                continue  # as the suite excludes it: one hypergradient costs more than the budget
            out += [_record(f"fd-m{m}", "fd", strategy, s, m, 50) for s in range(3)]
    for T in (10, 40):
        out += [_record(f"lr-T{T}", "lr", st, s, 2, T) for st in RUNS for s in range(3)]
    # A kind whose tasks differ in m and T at once is no axis.
    out += [
        _record("mixed-a", "mixed", "random", 0, 2, 10),
        _record("mixed-b", "mixed", "random", 0, 3, 20),
    ]
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("crossover")
    lines = [json.dumps(r) for r in records()]
    (directory / "runs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def frame(results):
    return crossover_frame(load_runs(results), load_trajectories(results))


def test_cost_to_target_is_the_first_point_at_or_below_the_target(frame):
    assert frame["target"].unique().tolist() == [pytest.approx(0.55)]
    cells = frame.set_index(["task", "strategy", "seed"])
    assert cells.loc[("fd-m1", "random", 0), "cost_to_target"] == 3.0  # 0.54 <= 0.55
    assert cells.loc[("fd-m1", "random", 1), "cost_to_target"] == 3.0  # 0.544
    assert cells.loc[("fd-m1", "random", 2), "cost_to_target"] == 5.0  # 0.57 at cost 3, 0.53
    assert cells.loc[("fd-m1", "reverse-hg", 2), "cost_to_target"] == 9.0  # 0.56, then 0.33
    assert math.isinf(cells.loc[("fd-m100", "random", 0), "cost_to_target"])
    assert math.isinf(cells.loc[("fd-m10", "forward-hg", 0), "cost_to_target"])
    assert cells.loc[("fd-m1", "reverse-hg", 2), "loss_at_budget"] == pytest.approx(0.33)


def test_axes_are_the_kinds_that_vary_one_knob(frame):
    axes = [
        (knob, kind, sorted(rows["task"].unique())) for knob, kind, rows in crossover_axes(frame)
    ]
    assert axes == [("m", "fd", ["fd-m1", "fd-m10", "fd-m100"]), ("T", "lr", ["lr-T10", "lr-T40"])]


def test_tables_name_who_is_first_to_the_target_and_lowest_at_the_budget(frame):
    detail, winners = crossover_tables(frame)
    rows = {(r[1], r[2]): r for r in detail.rows if r[0].startswith("fd")}
    assert rows[("m = 1", "random")][3:5] == ["3/3", "3"]  # costs 3, 3, 5
    assert rows[("m = 100", "random")][3:5] == ["0/3", "not reached"]
    assert rows[("m = 10", "forward-hg")][7] == "20"  # cost per unit ∝ m
    assert {rows[(f"m = {m}", "ift-cg")][7] for m in (1, 10, 100)} == {"1.5"}
    fd = [r for r in winners.rows if r[0].startswith("fd")]
    # IFT (target at cost 4) is first only where random search (3) never reaches it.
    assert [r[3] for r in fd] == ["random (3)", "random (3)", "ift-cg (4)"]
    assert [r[4] for r in fd] == ["ift-cg (6)"] * 3  # 0.4-0.43 at 6; Reverse-HG's 0.3 at 9
    assert [r[5] for r in fd] == ["reverse-hg (0.304)"] * 3
    lr = [r for r in winners.rows if r[0].startswith("lr")]
    assert [r[3:5] for r in lr] == [["random (3)", "reverse-hg (9)"]] * 2
    assert [rows[("m = 1", s)][3] for s in ("ift-cg", "forward-hg")] == ["3/3", "0/3"]
    lr_ift = [r for r in detail.rows if r[0].startswith("lr") and r[2] == "ift-cg"]
    assert [r[3:5] for r in lr_ift] == [["0/3", "not reached"]] * 2


def test_figure_draws_both_axes_without_overlapping_text(frame):
    fig = crossover_figure(frame, strategy_colors(list(RUNS)))
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 6
    assert overlapping_texts(fig) == []


def _dashed(ax, color) -> list:
    """The y values of the prediction lines drawn in `color` on `ax`."""
    return [
        line.get_ydata()
        for line in ax.get_lines()
        if line.get_linestyle() == "--" and line.get_color() == color
    ]


def test_figure_draws_ift_with_its_own_marker_and_flat_predictions(frame):
    colors = strategy_colors(list(RUNS))
    fig = crossover_figure(frame, colors)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "ift-cg" in legend
    handles = fig.legends[0].legend_handles
    markers = {text: h.get_marker() for text, h in zip(legend, handles, strict=True)}
    assert markers["ift-cg"] not in {markers[s] for s in ("random", "reverse-hg", "forward-hg")}
    unit, memory = fig.axes[2], fig.axes[5]
    # Cost per unit flat in m through IFT's measured 1.5; memory flat in T through its 10 MB.
    [flat_cost] = _dashed(unit, colors["ift-cg"])
    assert set(flat_cost) == {1.5}
    [flat_memory] = _dashed(memory, colors["ift-cg"])
    assert set(flat_memory) == {10.0}
    [reverse_memory] = _dashed(memory, colors["reverse-hg"])
    assert reverse_memory[-1] - reverse_memory[0] == pytest.approx(0.5 * 30)  # a state a step


def test_report_has_a_crossover_section_only_when_results_hold_one(tmp_path):
    # The smallest axis (two m, one strategy, one seed), so the whole report stays quick.
    few = [r for r in records() if r["task"] in ("fd-m1", "fd-m10") and r["cell"].endswith("hg/0")]
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in few), "utf-8")
    write_report(tmp_path, tmp_path / "with")
    assert (tmp_path / "with" / "figures" / "crossover.png").is_file()
    text = (tmp_path / "with" / "REPORT.md").read_text(encoding="utf-8")
    section = text[text.index("## Crossover study") : text.index("## Figures")]
    assert "who wins where" in section and "figures/crossover.png" in section
    assert "crossover.png" not in text[text.index("## Figures") :]
    plain = runs_frame(make_records())  # the report fixture: no task with a knob
    assert crossover_frame(plain, trajectories_frame(make_records())).empty
    assert crossover_tables(crossover_frame(plain, trajectories_frame([]))) == []


# --- docs/results.md's claims about the committed crossover run ------------------------------

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "crossover"


@pytest.fixture(scope="module")
def committed():
    runs = load_runs(COMMITTED)
    assert (runs["status"] == "ok").all() and len(runs) == 129  # 114, and SOBA's 15
    return crossover_frame(runs, load_trajectories(COMMITTED))


def test_readme_who_wins_where(committed):
    _, winners = crossover_tables(committed)
    rows = {(r[0].split()[0], r[1]): r[3:] for r in winners.rows}
    fd = {m: rows[("featuredecay", f"m = {m}")] for m in ("1", "10", "100", "1000", "10000")}
    first = [fd[m][0] for m in fd]
    assert first == [
        "random = tpe (1)",
        "ift-cg (2.38)",
        "random (2.01)",
        "soba (1.5)",
        "soba (0.9)",  # no black-box search at m = 10^4
    ]
    assert [fd[m][1] for m in ("1", "10")] == ["random = tpe (2.01)", "random = tpe (3.02)"]
    assert [fd[m][1] for m in ("100", "1000", "10000")] == [
        "ift-cg (2.38)",
        "soba (1.8)",
        "soba (0.9)",
    ]
    assert [fd[m][2].split()[0] for m in fd] == ["random", "ift-cg", "ift-cg", "ift-cg", "ift-cg"]
    for T in ("25", "100", "400"):
        assert rows[("lrschedule", f"T = {T}")][0].startswith("reverse-hg (")
    assert [rows[("lrschedule", f"T = {T}")][1] for T in ("25", "100")] == ["none", "none"]


def test_readme_ift_is_cheaper_per_hypergradient_and_blind_to_step_sizes(committed):
    knob = {kind: rows for _, kind, rows in crossover_axes(committed)}
    fd = summary(knob["featuredecay"], "m").set_index(["m", "strategy"])
    assert fd.xs("ift-cg", level="strategy")["unit_cost"].round(2).unique().tolist() == [1.23]
    loss = fd["loss_at_budget"]
    for m in (10, 100, 1000, 10000):
        assert loss[(m, "ift-cg")] < loss[(m, "reverse-hg")]
    lr = knob["lrschedule"]
    ift = lr[lr["strategy"] == "ift-cg"]
    assert sorted(ift["T"].unique()) == [25, 100]
    # It never leaves the defaults: every seed ends at the defaults' loss, short of the target.
    assert (ift["loss_at_budget"] == ift["default_val_loss"]).all()
    assert ift["cost_to_target"].map(math.isinf).all()


def test_readme_forward_cost_grows_with_m_and_reverse_memory_with_t(committed):
    knob = {kind: rows for _, kind, rows in crossover_axes(committed)}
    unit = summary(knob["featuredecay"], "m").set_index(["m", "strategy"])["unit_cost"]
    assert unit[(10, "forward-hg")] / unit[(1, "forward-hg")] > 3.5
    assert unit.xs("reverse-hg", level="strategy").round(2).unique().tolist() == [3.01]
    memory = summary(knob["lrschedule"], "T").set_index(["T", "strategy"])["added_rss_mb"]
    assert memory[(25, "reverse-hg")] < memory[(25, "forward-hg")]
    assert memory[(400, "reverse-hg")] > 1.5 * memory[(400, "forward-hg")]
    for flat in ("forward-hg", "ift-cg"):
        assert memory.xs(flat, level="strategy").agg(["min", "max"]).diff().iloc[-1] < 5
