"""The crossover study: where reverse, forward, RTHO, implicit (IFT) and black-box search each win
as the number of hyperparameters m or the training length T grows.

A task with a dimension knob records, with every cell's final metrics, a `crossover` entry (see
hobench.tasks.knob): its m, its T, the size of one training state, and two validation losses
that no strategy decides — the defaults' and the best with every hyperparameter equal (the m = 1
problem, over a fixed 1-D grid). Tasks of one kind (and one `series`, where the entry names one,
e.g. the data set) that differ only in m (or only in T) form an axis. Per cell:

- the target: the best single value's loss less (1 − TARGET_GAIN) of its gain over the
  defaults, i.e. 90 % of the way from the defaults to the best single value;
- cost to target: the cost (plain runs) at the first trajectory point whose incumbent
  validation loss is at or below the target (not reached: infinite); the tables also give the
  cost to match the best single value itself (the whole gain);
- loss at the budget: the incumbent validation loss at the cell's last point;
- the cost of one unit (an evaluation, a hypergradient, an RTHO chunk) and the memory added.

Every value is read from the records; the paper's predictions (forward cost ∝ m, reverse memory
∝ T) are drawn through one measured point each, with IFT's (T steps and a fixed number of
Hessian-vector products, one state stored: flat in m and in T) beside them, so the figure shows
where the measurement leaves them.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from hobench.report.plots import _figure, _legend_below, _log_scale, _save, _style
from hobench.report.tables import Table

CROSSOVER_FIGURE = "crossover.png"
TARGET_GAIN = 0.9  # the target: this fraction of the way from the defaults to the best single value
NOT_REACHED = "not reached"
AXIS_LABELS = {"m": "m, hyperparameters", "T": "T, training steps"}
# The strategies whose predictions the figure draws (strategy kinds).
FORWARD, REVERSE = "forward-hg", "reverse-hg"
IMPLICIT = ("ift-cg", "ift-neumann")
FLAT_IN_M = (REVERSE, *IMPLICIT)  # one unit's cost does not depend on m
FLAT_IN_T = (FORWARD, *IMPLICIT)  # no trajectory stored: memory does not depend on T
# A marker per family of strategy kinds, so lines of near colours stay apart.
MARKERS = {FORWARD: "^", REVERSE: "s", "rtho": "D", **dict.fromkeys(IMPLICIT, "v")}


def marker(kind: str) -> str:
    """The figure's marker for a strategy kind (black-box search and the rest: a circle)."""
    return MARKERS.get(kind, "o")


def _knob_info(info: object) -> dict | None:
    """A cell's `final.crossover` entry, when it is one."""
    return info if isinstance(info, dict) and {"m", "T"} <= set(info) else None


def crossover_frame(runs: pd.DataFrame, trajectories: pd.DataFrame) -> pd.DataFrame:
    """One row per ok cell of a knob task: identity, m, T, state_mb, the references, the target,
    cost_to_target (inf: not reached), loss_at_budget, unit_cost, cost, added_rss_mb, budget."""
    if "final.crossover" not in runs:
        return pd.DataFrame()
    cells = runs[(runs["status"] == "ok") & runs["final.crossover"].map(_knob_info).notna()]
    points = trajectories.sort_values(["cell", "point"]).groupby("cell", sort=False)
    rows = []
    for _, cell in cells.iterrows():
        info = _knob_info(cell["final.crossover"])
        gain = info["default_val_loss"] - info["single_val_loss"]
        target = info["single_val_loss"] + (1 - TARGET_GAIN) * gain
        cost_to_target = cost_to_single = math.inf
        loss_at_budget = math.nan
        if cell["cell"] in points.groups:
            trajectory = points.get_group(cell["cell"])
            costs = trajectory["cost"].to_numpy(dtype=float)
            incumbent = trajectory["incumbent_val_loss"].to_numpy(dtype=float)
            cost_to_target = _first_cost(costs, incumbent, target)
            cost_to_single = _first_cost(costs, incumbent, info["single_val_loss"])
            finite = incumbent[np.isfinite(incumbent)]
            loss_at_budget = float(finite[-1]) if finite.size else math.nan
        rows.append(
            {
                "task": cell["task"],
                "task_kind": cell["task_kind"],
                # An axis never mixes series (e.g. two data sets of one task kind).
                "series": " ".join(str(s) for s in (cell["task_kind"], info.get("series")) if s),
                "strategy": cell["strategy"],
                "strategy_kind": cell["strategy_kind"],
                "seed": cell["seed"],
                "m": int(info["m"]),
                "T": int(info["T"]),
                "state_mb": float(info.get("state_mb", math.nan)),
                "default_val_loss": float(info["default_val_loss"]),
                "single_val_loss": float(info["single_val_loss"]),
                "target": target,
                "cost_to_target": cost_to_target,
                "cost_to_single": cost_to_single,
                "loss_at_budget": loss_at_budget,
                "unit_cost": cell["resources.unit_cost"],
                "cost": cell["resources.cost"],
                "added_rss_mb": cell["resources.added_rss_mb"],
                "budget": cell["budget.cost"],
            }
        )
    return pd.DataFrame(rows)


def _first_cost(costs: np.ndarray, incumbent: np.ndarray, level: float) -> float:
    """The cost at the first point whose incumbent is at or below `level` (inf: none)."""
    reached = np.flatnonzero(incumbent <= level)
    return float(costs[reached[0]]) if reached.size else math.inf


def crossover_axes(frame: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(knob, series, rows) for each series (a task kind, with the series its crossover entries
    name) whose tasks differ in exactly one knob: "m" when m varies at one T, "T" when T varies
    at one m (or with m = T throughout)."""
    axes = []
    if frame.empty:
        return axes
    for kind, rows in frame.groupby("series", sort=False):
        knobs = rows.groupby("task")[["m", "T"]].first()
        if len(knobs) < 2:
            continue
        if knobs["T"].nunique() == 1 and knobs["m"].nunique() > 1:
            axes.append(("m", str(kind), rows))
        elif knobs["m"].nunique() == 1 or (knobs["m"] == knobs["T"]).all():
            axes.append(("T", str(kind), rows))
    return axes


def _median(values: pd.Series) -> float:
    """Median over seeds, with "not reached" (inf) counted as the largest value."""
    values = values.dropna()
    return float(np.median(values)) if len(values) else math.nan


def summary(rows: pd.DataFrame, knob: str) -> pd.DataFrame:
    """Per (knob value, strategy): seeds, seeds that reached the target, and the medians."""
    grouped = rows.groupby([knob, "strategy"], sort=True)
    out = grouped.agg(
        seeds=("seed", "size"),
        reached=("cost_to_target", lambda c: int(np.isfinite(c).sum())),
        cost_to_target=("cost_to_target", _median),
        cost_to_single=("cost_to_single", _median),
        loss_at_budget=("loss_at_budget", _median),
        unit_cost=("unit_cost", _median),
        added_rss_mb=("added_rss_mb", _median),
        target=("target", _median),
        default_val_loss=("default_val_loss", _median),
        single_val_loss=("single_val_loss", _median),
        state_mb=("state_mb", _median),
        budget=("budget", _median),
    )
    return out.reset_index()


def _fixed(knob: str, rows: pd.DataFrame) -> str:
    other = "T" if knob == "m" else "m"
    values = sorted(rows[other].unique())
    return f"{other} = {values[0]}" if len(values) == 1 else f"{other} = {knob}"


def _number(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return NOT_REACHED if math.isinf(value) else f"{value:.{digits}g}"


def _best(group: pd.DataFrame, column: str, digits: int = 3) -> str:
    """The strategy (strategies, when tied) with the lowest median in `column`, or "none"."""
    best = group[column].min()
    if not math.isfinite(best):
        return "none"
    shown = _number(best, digits)  # tied: equal as shown (float32 runs differ in rounding)
    tied = group[group[column].map(lambda v: _number(v, digits)) == shown]["strategy"]
    return f"{' = '.join(map(str, tied))} ({shown})"


def crossover_tables(frame: pd.DataFrame) -> list[Table]:
    """Per axis: every strategy at every knob value; then who is first to the target and who
    is lowest at the budget at each knob value."""
    axes = crossover_axes(frame)
    if not axes:
        return []
    detail, winners = [], []
    for knob, kind, rows in axes:
        stats = summary(rows, knob)
        for _, row in stats.iterrows():
            detail.append(
                [
                    f"{kind} ({_fixed(knob, rows)})",
                    f"{knob} = {row[knob]}",
                    str(row["strategy"]),
                    f"{row['reached']}/{row['seeds']}",
                    _number(row["cost_to_target"]),
                    _number(row["cost_to_single"]),
                    _number(row["loss_at_budget"], 4),
                    _number(row["unit_cost"]),
                    _number(row["added_rss_mb"]),
                ]
            )
        for value, group in stats.groupby(knob, sort=True):
            winners.append(
                [
                    f"{kind} ({_fixed(knob, rows)})",
                    f"{knob} = {value}",
                    f"{_number(group['target'].median(), 4)}",
                    _best(group, "cost_to_target"),
                    _best(group, "cost_to_single"),
                    _best(group, "loss_at_budget", 4),
                ]
            )
    caption = (
        f"Target: the validation loss {TARGET_GAIN:.0%} of the way from the defaults' to the "
        "best with every hyperparameter equal (a fixed 1-D grid: the m = 1 optimum, reachable "
        "at every m), per seed. Cost to target: plain runs spent when the incumbent first "
        "reached it; to the best single value: the same for that value's loss itself. "
        "Medians over seeds (a seed that never reached it counts as the largest). "
        "Unit: one evaluation (black-box), one hypergradient (Forward-/Reverse-HG, IFT), one chunk "
        "of Δ steps carrying Z (RTHO). Memory: peak RSS the cell added over its worker."
    )
    return [
        Table(
            name="crossover",
            title="Crossover study: every strategy as m and T grow",
            header=[
                "task",
                "knob",
                "strategy",
                "reached target",
                "cost to target (median)",
                "cost to the best single value (median)",
                "validation loss at the budget (median)",
                "cost per unit (plain runs)",
                "added memory (MB)",
            ],
            rows=detail,
            caption=caption,
        ),
        Table(
            name="crossover-winners",
            title="Crossover study: who wins where",
            header=[
                "task",
                "knob",
                "target validation loss (median)",
                "first to the target (median cost)",
                "first to the best single value (median cost)",
                "lowest at the budget (median loss)",
            ],
            rows=winners,
            caption="From the table above: at each knob value, the strategy with the lowest "
            "median cost to the target and to the best single value's loss (none: no "
            "strategy's median reached it) and the one with the lowest median validation loss "
            "when the budget was spent; tied strategies are joined by “=”.",
        ),
    ]


# --- the figure ------------------------------------------------------------------------------


def _dodge(strategies: list[str]) -> dict[str, float]:
    """A small multiplicative x offset per strategy, so markers at one knob value stay apart."""
    n = len(strategies)
    return {s: 1.12 ** (i - (n - 1) / 2) for i, s in enumerate(strategies)}


def _kinds(rows: pd.DataFrame) -> pd.Series:
    """strategy → strategy kind."""
    return rows.groupby("strategy")["strategy_kind"].first()


def _cost_panel(ax: Axes, rows: pd.DataFrame, knob: str, colors: dict, dodge: dict) -> None:
    budget = float(rows["budget"].max())
    ceiling = budget * 1.6  # where "not reached" is drawn, above every finite cost
    stats = summary(rows, knob)
    kinds = _kinds(rows)
    for strategy, group in stats.groupby("strategy", sort=False):
        x = group[knob].to_numpy(float) * dodge[strategy]
        y = group["cost_to_target"].to_numpy(float)
        shown = np.where(np.isinf(y), ceiling, y)
        ax.plot(x, shown, "-", color=colors[strategy], lw=1.3, alpha=0.8)
        ax.scatter(
            x[np.isfinite(y)], y[np.isfinite(y)], color=colors[strategy],
            marker=marker(kinds[strategy]), s=40, zorder=3,
        )  # fmt: skip
        ax.scatter(
            x[np.isinf(y)], shown[np.isinf(y)], facecolors="white", edgecolors=colors[strategy],
            marker="X", s=55, linewidths=1.4, zorder=3,
        )  # fmt: skip
        seeds = rows[rows["strategy"] == strategy]
        seed_y = seeds["cost_to_target"].to_numpy(float)
        ax.scatter(
            seeds[knob].to_numpy(float) * dodge[strategy],
            np.where(np.isinf(seed_y), ceiling, seed_y),
            color=colors[strategy], s=9, alpha=0.45, zorder=2,
        )  # fmt: skip
    ax.axhline(budget, color="0.4", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(top=ceiling * 1.35)
    ticks = [t for t in (0.5, 1, 2, 5, 10, 20, 50, 100) if t < budget * 0.8] + [budget, ceiling]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks[:-1]] + [NOT_REACHED])
    ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    ax.set_ylabel("cost to target (plain runs)")


def _loss_panel(ax: Axes, rows: pd.DataFrame, knob: str, colors: dict, dodge: dict) -> None:
    stats = summary(rows, knob)
    kinds = _kinds(rows)
    for strategy, group in stats.groupby("strategy", sort=False):
        x = group[knob].to_numpy(float) * dodge[strategy]
        style = dict(color=colors[strategy], marker=marker(kinds[strategy]), ms=6, lw=1.3)
        ax.plot(x, group["loss_at_budget"], **style)
    refs = stats.groupby(knob)[["default_val_loss", "single_val_loss", "target"]].median()
    x = refs.index.to_numpy(float)
    ax.plot(x, refs["default_val_loss"], color="0.55", ls="--", lw=1.2)
    ax.plot(x, refs["single_val_loss"], color="black", ls=":", lw=1.4)
    ax.plot(x, refs["target"], color="black", ls="-", lw=0.8, alpha=0.6)
    values = np.concatenate([stats["loss_at_budget"].to_numpy(float), refs.to_numpy().ravel()])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() / values.min() > 4:
        _log_scale(ax, "y", values)
    ax.set_ylabel("validation loss at the budget")


def _unit_cost_panel(ax: Axes, rows: pd.DataFrame, colors: dict, dodge: dict) -> None:
    """Cost of one unit against m, with Forward-HG ∝ m and Reverse-HG and IFT flat drawn
    through one measured point each."""
    stats = summary(rows, "m")
    kinds = _kinds(rows)
    for strategy, group in stats.groupby("strategy", sort=False):
        x = group["m"].to_numpy(float) * dodge[strategy]
        style = dict(color=colors[strategy], marker=marker(kinds[strategy]), ms=6, lw=1.3)
        ax.plot(x, group["unit_cost"], **style)
    grid = np.geomspace(stats["m"].min(), stats["m"].max(), 50)
    for strategy, kind in kinds.items():
        measured = stats[stats["strategy"] == strategy].dropna(subset=["unit_cost"])
        if measured.empty or kind not in (FORWARD, *FLAT_IN_M):
            continue
        # Through the largest m measured (forward: its asymptote) / the smallest (the flat ones).
        anchor = measured.iloc[-1] if kind == FORWARD else measured.iloc[0]
        slope = anchor["unit_cost"] / anchor["m"] if kind == FORWARD else 0.0
        line = slope * grid if kind == FORWARD else np.full_like(grid, anchor["unit_cost"])
        ax.plot(grid, line, color=colors[strategy], ls="--", lw=1.1, alpha=0.8)
    ax.axhline(float(rows["budget"].max()), color="0.4", ls=":", lw=1)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylabel("cost of one unit (plain runs)")


def _memory_panel(ax: Axes, rows: pd.DataFrame, colors: dict, dodge: dict) -> None:
    """Added memory against T, with Reverse-HG's (T+1) stored states drawn from its smallest T
    and Forward-HG's and IFT's flat lines from their own."""
    stats = summary(rows, "T")
    kinds = _kinds(rows)
    for strategy, group in stats.groupby("strategy", sort=False):
        x = group["T"].to_numpy(float) * dodge[strategy]
        style = dict(color=colors[strategy], marker=marker(kinds[strategy]), ms=6, lw=1.3)
        ax.plot(x, group["added_rss_mb"], **style)
    grid = np.geomspace(stats["T"].min(), stats["T"].max(), 50)
    for strategy, kind in kinds.items():
        measured = stats[stats["strategy"] == strategy].dropna(subset=["added_rss_mb"])
        if measured.empty or kind not in (REVERSE, *FLAT_IN_T):
            continue
        first = measured.iloc[0]
        state = first["state_mb"] if kind == REVERSE else 0.0
        line = first["added_rss_mb"] + (grid - first["T"]) * state
        ax.plot(grid, line, color=colors[strategy], ls="--", lw=1.1, alpha=0.8)
    ax.set_ylim(bottom=0)  # linear from 0: the growth is read against the whole
    ax.set_ylabel("added memory (MB)")


def crossover_figure(frame: pd.DataFrame, colors: dict):
    """One row per axis (m grows, T grows): cost to target, validation loss at the budget, and
    the resource the paper predicts (cost per unit ∝ m for forward; memory ∝ T for reverse; both
    flat for IFT)."""
    axes_list = crossover_axes(frame)
    if not axes_list:
        return None
    strategies = [str(s) for s in pd.unique(frame["strategy"])]
    dodge = _dodge(strategies)
    with _style():
        fig, grid = _figure(len(axes_list), 3, width=15.5, height=4.3 * len(axes_list) + 1.2)
        for (knob, kind, rows), panels in zip(axes_list, grid, strict=True):
            _cost_panel(panels[0], rows, knob, colors, dodge)
            _loss_panel(panels[1], rows, knob, colors, dodge)
            if knob == "m":
                _unit_cost_panel(panels[2], rows, colors, dodge)
            else:
                _memory_panel(panels[2], rows, colors, dodge)
            where = f"{kind}, {_fixed(knob, rows)}"
            titles = ("cost to reach the target", "loss when the budget is spent")
            titles += ("cost per unit" if knob == "m" else "memory",)
            for ax, title in zip(panels, titles, strict=True):
                values = rows[knob].to_numpy(float)
                ax.set_xscale("log")
                ax.set_xticks(sorted(set(values)), [f"{v:g}" for v in sorted(set(values))])
                ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
                ax.set_xlim(values.min() / 1.6, values.max() * 1.6)
                ax.set_xlabel(AXIS_LABELS[knob])
                ax.set_title(f"{where}: {title}")
        kinds = _kinds(frame)
        handles = [
            Line2D([], [], color=colors[s], marker=marker(kinds[s]), lw=1.3) for s in strategies
        ]
        labels = list(strategies)
        extra = [
            (Line2D([], [], color="0.3", ls="--", lw=1.1), "prediction, through one point"),
            (Line2D([], [], color="0.4", ls=":", lw=1), "budget"),
            (Line2D([], [], color="0.55", ls="--", lw=1.2), "defaults (reference)"),
            (Line2D([], [], color="black", ls=":", lw=1.4), "best single value (reference)"),
            (Line2D([], [], color="black", lw=0.8, alpha=0.6), "target"),
            (
                Line2D([], [], color="0.3", marker="X", mfc="white", ls="none", ms=8),
                f"{NOT_REACHED} (median)",
            ),
        ]
        _legend_below(
            fig, handles + [h for h, _ in extra], labels + [label for _, label in extra], "legend"
        )
    return fig


def plot_crossover(frame: pd.DataFrame, path: Path, colors: dict) -> Path | None:
    """The crossover figure of `crossover_frame`'s rows, or None when they hold no knob axis."""
    fig = crossover_figure(frame, colors)
    return None if fig is None else _save(fig, path)


def crossover_caption() -> str:
    return (
        "Crossover study, one row per knob (tasks of one kind that differ only in m or only "
        f"in T). Left: cost (plain runs) until the incumbent validation loss first reached the "
        f"target ({TARGET_GAIN:.0%} of the way from the defaults to the best single value), "
        "median over seeds as a line, seeds as small dots, ✕ at the top: not reached within "
        "the budget. Middle: the incumbent validation loss when the budget was spent, with the "
        "references. Right, m row: the cost of one unit (an evaluation, a hypergradient, an "
        "RTHO chunk), with the predictions (Forward-HG ∝ m through its measurement at the "
        "largest m it ran; Reverse-HG and IFT, T steps and a fixed number of products, "
        "independent of m through their smallest); right, T row: the peak memory a cell added, "
        "with Reverse-HG's prediction (its memory at the smallest T plus one stored training "
        "state per extra step) and Forward-HG's and IFT's (flat: no trajectory stored). "
        "RTHO's points are its one online run's weights every few hyper-steps. A strategy "
        "missing at some knob value was not run there (one unit costs more than the budget, "
        "or the suite left the cell out to fit its time: see its comments)."
    )
