"""Figures regenerated from the runs and trajectory frames: seaborn drawing on matplotlib
`Figure` objects rendered by the Agg canvas (no pyplot, so no global figure state or GUI backend).

Each `plot_*` function draws one PNG and returns its path, or None when the data it needs is
absent (the report then simply has no such figure).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hobench.report.stats import score_metric, t_interval
from hobench.report.tables import file_stem

DPI = 110
LOG_X_SPAN = 10.0  # use a log x axis when the data spans more than this factor
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12.5,
    "axes.labelsize": 11.5,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10.5,
    "figure.titlesize": 13.5,
}
LAMBDA_COLORS = {"clean": "tab:blue", "corrupted": "tab:red"}


@contextmanager
def _seeded_numpy(seed: int = 0) -> Iterator[None]:
    """numpy's global generator seeded for the block and restored after it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@contextmanager
def _style() -> Iterator[None]:
    # rcParams are read when artists are created, so drawing happens inside this context.
    with sns.axes_style("whitegrid"), mpl.rc_context(STYLE):
        yield


def _figure(nrows: int, ncols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


# Every figure is written twice: the PNG the report shows, and a PDF beside it (same stem),
# vector graphics for a paper.
VECTOR_SUFFIX = ".pdf"


def _save(fig: Figure, path: Path, **kwargs) -> Path:
    """`path` (a PNG) and its PDF twin; returns the PNG's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, **kwargs)
    # No creation date in the PDF, so a regenerated report differs only where a figure does.
    fig.savefig(path.with_suffix(VECTOR_SUFFIX), metadata={"CreationDate": None}, **kwargs)
    return path


def strategy_colors(strategies: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One stable colour per strategy, shared by every figure of a report."""
    palette = sns.color_palette("tab10" if len(strategies) <= 10 else "husl", len(strategies))
    return dict(zip(strategies, palette, strict=True))


def _colors(frame: pd.DataFrame, colors: dict | None) -> dict:
    return colors or strategy_colors([str(s) for s in pd.unique(frame["strategy"])])


# --- axes ------------------------------------------------------------------------------------


def plain_number(value: float, _pos: object = None) -> str:
    """Tick text short enough not to run into its neighbours: 50000 -> 50k, 2e6 -> 2M."""
    if abs(value) >= 1e4:
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:g}{suffix}"
    return f"{value:.4g}"


def _log_scale(ax: Axes, which: str, values: np.ndarray) -> None:
    """A log axis whose ticks cannot crowd: 1-2-5 steps over at most three decades, decades over
    more, and evenly spaced plain numbers when the data spans less than one decade (where a log
    locator would leave a single tick or none)."""
    ax.set(**{f"{which}scale": "log"})
    axis = ax.xaxis if which == "x" else ax.yaxis
    positive = values[np.isfinite(values) & (values > 0)]
    decades = np.log10(positive.max() / positive.min()) if positive.size else 0.0
    if decades < 1:
        locator = mpl.ticker.MaxNLocator(nbins=5)
    else:
        locator = mpl.ticker.LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,))
    axis.set_major_locator(locator)
    axis.set_major_formatter(mpl.ticker.FuncFormatter(plain_number))
    axis.set_minor_formatter(mpl.ticker.NullFormatter())


def _maybe_log_x(ax: Axes, values: np.ndarray) -> None:
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size and positive.max() / positive.min() > LOG_X_SPAN:
        _log_scale(ax, "x", values)
    else:
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(nbins=6))
        ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(plain_number))


def _legend_below(fig: Figure, handles: list, labels: list[str], title: str) -> None:
    # Outside the axes, so it can cover neither data nor titles, however many strategies; as
    # many columns as the figure's width holds (about 6 pt a character, 45 pt for the handle).
    column_pt = 6.0 * max(len(label) for label in labels) + 45.0
    ncols = max(1, min(5, len(labels), int(72.0 * fig.get_figwidth() // column_pt)))
    fig.legend(handles, labels, title=title, loc="outside lower center", ncols=ncols)


# --- anytime curves ------------------------------------------------------------------------


def step_values(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The step function through points (x, y) read at `grid`: the y of the last point with
    x <= g (an incumbent holds until it is beaten), NaN before the first point."""
    order = np.argsort(x, kind="stable")
    x, y = np.asarray(x, dtype=float)[order], np.asarray(y, dtype=float)[order]
    index = np.searchsorted(x, grid, side="right") - 1
    out = np.full(np.shape(grid), np.nan)
    out[index >= 0] = y[index[index >= 0]]
    return out


def median_band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Median and quartiles over seeds (rows) at the grid columns where every seed has a value.

    Returns `(defined, median, q25, q75)`; `defined` masks the columns used, so a seed that has
    no incumbent yet hides the curve rather than biasing it towards the seeds that do.
    """
    defined = ~np.isnan(curves).any(axis=0)
    if not defined.any():
        empty = np.empty(0)
        return defined, empty, empty, empty
    median, q25, q75 = np.percentile(curves[:, defined], [50, 25, 75], axis=0)
    return defined, median, q25, q75


Seed = tuple[np.ndarray, np.ndarray, float]  # a seed's points (x, y) and the x its budget ends at

# The confidence band of the anytime median: a percentile bootstrap over seeds.
BAND_LEVEL, BAND_BOOT = 0.95, 400


def median_ci(
    curves: np.ndarray, level: float = BAND_LEVEL, n_boot: int = BAND_BOOT, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of the median over seeds (rows) at every column: seeds
    resampled with replacement `n_boot` times from `numpy.random.default_rng(seed)`, so the band
    is the same on every rebuild. One seed gives a zero-width band (nothing to resample)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, curves.shape[0], size=(n_boot, curves.shape[0]))
    medians = np.median(curves[draws], axis=1)  # (n_boot, columns)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(medians, [alpha, 1.0 - alpha], axis=0)
    return low, high


def anytime_curve(seeds: Sequence[Seed]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Median and quartiles over seeds of their incumbent step functions, each held at its last
    value up to its seed's end, so a strategy with a single point is a flat line to the end.

    Read at the union of the seeds' points and ends, where alone a median of step functions can
    change, so the curve is exact; returns `(x, median, q25, q75)` from the first x at which every
    seed has an incumbent (see `median_band`) to the last end.
    """
    breaks = np.unique(np.concatenate([np.append(x, end) for x, _, end in seeds]))
    curves = np.array([step_values(x, y, breaks) for x, y, _ in seeds])
    defined, median, q25, q75 = median_band(curves)
    return breaks[defined], median, q25, q75


def anytime_ci(seeds: Sequence[Seed]) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap interval of `anytime_curve`'s median (`median_ci`), at the same x."""
    breaks = np.unique(np.concatenate([np.append(x, end) for x, _, end in seeds]))
    curves = np.array([step_values(x, y, breaks) for x, y, _ in seeds])
    defined = ~np.isnan(curves).any(axis=0)
    if not defined.any():
        return np.empty(0), np.empty(0)
    return median_ci(curves[:, defined])


# Wall-clock is what a user waits for; cost (FLOPs, in plain-training equivalents) is the
# budget's unit, the same on every machine. Each x has the runs columns its cells end at, the
# first that is recorded: the budget's limit, then what was spent.
ANYTIME_AXES = (
    ("elapsed_s", ("resources.wall_s",), "wall-clock (s)", "vs wall-clock"),
    ("cost", ("budget.cost", "resources.cost"), "cost (plain-training equivalents)", "vs cost"),
)
# A trajectory column of incumbent regret, used instead of validation loss when recorded.
REGRET_POINT_COLUMN = "incumbent_regret"


def _has_regret(cells: pd.DataFrame) -> bool:
    # The rule of the rank tables: a task with any regret is judged by regret.
    return bool(cells["final.regret"].notna().any())


LOG_Y_SPAN = 4.0  # a loss spanning more than this factor gets a log axis: early losses would
# otherwise squeeze the later, close ones into a band at the bottom


def anytime_metric(points: pd.DataFrame, task_has_regret: bool) -> tuple[str, str, bool]:
    """`(trajectory column, axis label, log y)`: regret where the trajectory records it, else
    incumbent validation loss, on a log axis where the task has a known optimum or the loss
    spans more than a factor `LOG_Y_SPAN`."""
    if REGRET_POINT_COLUMN in points and points[REGRET_POINT_COLUMN].notna().any():
        return REGRET_POINT_COLUMN, "incumbent regret", True
    loss = points["incumbent_val_loss"].dropna()
    positive = bool(loss.size and (loss > 0).all())
    log_y = positive and (task_has_regret or loss.max() / loss.min() > LOG_Y_SPAN)
    return "incumbent_val_loss", "incumbent validation loss", log_y


def _cell_ends(runs: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    ends = pd.Series(np.nan, index=runs["cell"])
    for column in columns:
        ends = ends.fillna(pd.Series(runs[column].to_numpy(), index=runs["cell"]))
    return ends


def anytime_curves(
    points: pd.DataFrame, ends: pd.Series, x: str, y: str
) -> dict[str, tuple[int, tuple[np.ndarray, ...], tuple[np.ndarray, np.ndarray]]]:
    """Per strategy, `(seeds, anytime_curve(...), anytime_ci(...))` of `y` against `x`; a cell
    ends at `ends[cell]` or, where that is unknown or earlier, at its last point."""
    curves = {}
    for strategy, group in points.dropna(subset=[x]).groupby("strategy", sort=False):
        seeds = []
        for cell, seed in group.groupby("cell", sort=False):
            xs = seed[x].to_numpy()
            end = np.nanmax([ends.get(cell, np.nan), xs.max()])
            seeds.append((xs, seed[y].to_numpy(), float(end)))
        curve = anytime_curve(seeds)
        if curve[0].size:
            curves[str(strategy)] = (len(seeds), curve, anytime_ci(seeds))
    return curves


def _anytime_panel(ax: Axes, curves: dict, colors: dict, log_y: bool) -> None:
    # Records written before a field existed lack it: such a panel says so instead of failing.
    if not curves:
        ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", va="center")
        ax.set(xticks=[], yticks=[])
        return
    for strategy, (_, (xs, median, q25, q75), (low, high)) in curves.items():
        color = colors[strategy]
        # A dot where each line starts, and fewer-point lines on top: a flat line (one point)
        # lying on another strategy's line is still seen.
        zorder = 2.5 + 1.0 / len(xs)
        ax.step(xs, median, where="post", color=color, lw=2, label=strategy, zorder=zorder)
        ax.plot(xs[:1], median[:1], "o", color=color, markersize=6, zorder=zorder)
        # Light: the interquartile range of the seeds; dark: the median's 95 % bootstrap band.
        ax.fill_between(xs, q25, q75, step="post", color=color, alpha=0.08, lw=0)
        ax.fill_between(xs, low, high, step="post", color=color, alpha=0.25, lw=0)
    drawn = [curve for _, curve, _ in curves.values()]
    _maybe_log_x(ax, np.concatenate([xs for xs, *_ in drawn]))
    if log_y:
        _log_scale(ax, "y", np.concatenate([np.concatenate(c[1:]) for c in drawn]))


def anytime_figure(
    runs: pd.DataFrame, trajectories: pd.DataFrame, task: str, colors: dict | None = None
) -> Figure | None:
    """The anytime figure of `plot_anytime`, not yet saved; None without any incumbent."""
    points = trajectories[(trajectories["task"] == task) & (trajectories["status"] == "ok")]
    if not points["incumbent_val_loss"].notna().any():
        return None
    cells = _ok(runs[runs["task"] == task])
    rows = [anytime_metric(points, _has_regret(cells))]
    if _ranks_by_accuracy(cells, points):  # the metric the tables rank by, beside the search's
        points = points.assign(**{TEST_ACC_PCT: 100.0 * points["incumbent_test_acc"]})
        rows.append((TEST_ACC_PCT, "incumbent test accuracy (%)", False))
    colors = _colors(points, colors)
    fig, axes = _figure(len(rows), 2, width=12.5, height=5.4 if len(rows) == 1 else 9.0)
    seeds: dict[str, int] = {}
    for index, (row, (y, ylabel, log_y)) in enumerate(zip(axes, rows, strict=True)):
        for ax, (x, end_columns, xlabel, title) in zip(row, ANYTIME_AXES, strict=True):
            curves = anytime_curves(points, _cell_ends(cells, end_columns), x, y)
            _anytime_panel(ax, curves, colors, log_y)
            ax.set(xlabel=xlabel, ylabel=ylabel + (" (log)" if log_y else ""))
            if index == 0:
                ax.set_title(title)
            seeds.update({strategy: n for strategy, (n, _, _) in curves.items()})
    order = [s for s in colors if s in seeds]
    handles = [mpl.lines.Line2D([], [], color=colors[s], lw=2) for s in order]
    _legend_below(fig, handles, [f"{s} (n={seeds[s]})" for s in order], "strategy (seeds)")
    fig.suptitle(
        f"Anytime, task {task}: median over seeds, dark band = its 95 % bootstrap CI, "
        "light = IQR; lines run to each budget's end"
    )
    return fig


TEST_ACC_PCT = "incumbent_test_acc_pct"


def _ranks_by_accuracy(cells: pd.DataFrame, points: pd.DataFrame) -> bool:
    """Whether the tables rank this task by test accuracy (no regret) and the trajectory records
    the incumbent's test accuracy, so the anytime figure can show it."""
    if _has_regret(cells) or "final.test_acc" not in cells:
        return False
    recorded = "incumbent_test_acc" in points and points["incumbent_test_acc"].notna().any()
    return bool(cells["final.test_acc"].notna().any() and recorded)


def plot_anytime(
    runs: pd.DataFrame,
    trajectories: pd.DataFrame,
    task: str,
    path: Path,
    colors: dict | None = None,
) -> Path | None:
    """Incumbent validation loss (regret where the trajectory records it) vs wall-clock (left)
    and vs cost in plain-training equivalents (right) for one task: median over seeds with its
    95 % bootstrap band and the interquartile band, one step line per strategy (a second row of
    the incumbent's test accuracy on tasks the tables judge by it), each seed held at its last
    incumbent to the end of its cell (`resources.wall_s`; `budget.cost`). Log y where the task
    has a known optimum. A panel whose x is missing from every point (older records) says so."""
    with _style():
        fig = anytime_figure(runs, trajectories, task, colors)
        return None if fig is None else _save(fig, path)


# --- accuracy vs time, memory ----------------------------------------------------------------


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"]


def plot_accuracy_vs_time(
    runs: pd.DataFrame, path: Path, colors: dict | None = None
) -> Path | None:
    """Final test accuracy vs wall-clock, one panel per task, one dot per seed; the large
    outlined marker is the strategy's mean."""
    ok = _ok(runs).dropna(subset=["final.test_acc", "resources.wall_s"])
    if ok.empty:
        return None
    ok = ok.assign(accuracy=100.0 * ok["final.test_acc"])
    colors = _colors(runs, colors)
    tasks = [str(t) for t in pd.unique(ok["task"])]
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    with _style():
        fig, axes = _figure(nrows, ncols, width=max(7.5, 4.6 * ncols), height=4.2 * nrows + 1.0)
        for ax, task in zip(axes.flat, tasks, strict=False):
            cells = ok[ok["task"] == task]
            sns.scatterplot(
                data=cells,
                x="resources.wall_s",
                y="accuracy",
                hue="strategy",
                palette=colors,
                s=45,
                alpha=0.75,
                ax=ax,
                legend=False,
            )
            means = cells.groupby("strategy", sort=False)[["resources.wall_s", "accuracy"]].mean()
            for strategy, row in means.iterrows():
                ax.scatter(
                    row["resources.wall_s"],
                    row["accuracy"],
                    s=170,
                    marker="D",
                    color=colors[str(strategy)],
                    edgecolor="black",
                    linewidth=1.2,
                    zorder=3,
                )
            _maybe_log_x(ax, cells["resources.wall_s"].to_numpy())
            ax.set(
                title=f"task {task}", xlabel="wall-clock per cell (s)", ylabel="test accuracy (%)"
            )
        for ax in axes.flat[len(tasks) :]:
            ax.set_visible(False)
        shown = [s for s in colors if s in set(ok["strategy"])]
        handles = [
            mpl.lines.Line2D([], [], marker="o", ls="", color=colors[s], markersize=8)
            for s in shown
        ]
        _legend_below(fig, handles, shown, "strategy")
        fig.suptitle("Accuracy vs time: dots = seeds, diamonds = mean over seeds")
        return _save(fig, path)


# --- Pareto: the ranked metric against cost --------------------------------------------------


def pareto_front(points: pd.DataFrame, higher: bool) -> list[str]:
    """The strategies (index of `points`, columns `cost` and `score`) no other strategy beats
    on both: at most its cost and at least as good a score, one of them strictly; by cost."""
    front = []
    for name, row in points.iterrows():
        better = points["score"] >= row["score"] if higher else points["score"] <= row["score"]
        strictly = (points["cost"] < row["cost"]) | (
            points["score"] > row["score"] if higher else points["score"] < row["score"]
        )
        if not ((points["cost"] <= row["cost"]) & better & strictly).any():
            front.append(str(name))
    return sorted(front, key=lambda name: points.loc[name, "cost"])


def pareto_figure(runs: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    """Per task, each strategy's mean ranked metric (regret, test accuracy or test MSE, as the
    tables) against its mean cost in plain runs, with 95 % t-intervals over seeds on both, and
    the Pareto front (cheaper and better than nothing else) joined by a dashed line."""
    ok = _ok(runs).dropna(subset=["resources.cost"])
    panels = []
    for task, cells in ok.groupby("task", sort=False):
        judged, higher = score_metric(cells)
        cells = cells.dropna(subset=[judged])
        if cells.empty:
            continue
        scale = 100.0 if judged == "final.test_acc" else 1.0
        rows = {}
        for strategy, group in cells.groupby("strategy", sort=False):
            cost, cost_low, cost_high = t_interval(group["resources.cost"])
            score, low, high = t_interval(scale * group[judged])
            rows[str(strategy)] = {
                "cost": cost,
                "cost_err": 0.0 if np.isnan(cost_low) else cost - cost_low,
                "score": score,
                "score_err": 0.0 if np.isnan(low) else score - low,
            }
        label = {"final.test_acc": "test accuracy (%)", "final.regret": "regret"}.get(
            judged, judged.removeprefix("final.")
        )
        panels.append((str(task), pd.DataFrame.from_dict(rows, orient="index"), higher, label))
    if not panels:
        return None
    colors = _colors(runs, colors)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _figure(nrows, ncols, width=max(7.5, 4.6 * ncols), height=4.2 * nrows + 1.0)
    for ax, (task, points, higher, label) in zip(axes.flat, panels, strict=False):
        for strategy, row in points.iterrows():
            ax.errorbar(
                row["cost"],
                row["score"],
                xerr=row["cost_err"],
                yerr=row["score_err"],
                fmt="o",
                color=colors[str(strategy)],
                markersize=7,
                capsize=3,
                zorder=3,
            )
        front = pareto_front(points, higher)
        ax.plot(
            points.loc[front, "cost"],
            points.loc[front, "score"],
            "--",
            color="0.35",
            lw=1.2,
            zorder=2,
        )
        _maybe_log_x(ax, points["cost"].to_numpy())
        if label == "regret" and (points["score"] > 0).all():
            _log_scale(ax, "y", points["score"].to_numpy())
        better = "higher" if higher else "lower"
        ax.set(
            title=f"task {task}",
            xlabel="cost spent (plain runs)",
            ylabel=f"{label}, {better} is better",
        )
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    shown = [s for s in colors if s in set(ok["strategy"])]
    handles = [
        mpl.lines.Line2D([], [], marker="o", ls="", color=colors[s], markersize=8) for s in shown
    ]
    _legend_below(fig, handles, shown, "strategy")
    fig.suptitle(
        "Score against cost: means over seeds with 95 % t-intervals; dashed = Pareto front"
    )
    return fig


def plot_pareto(runs: pd.DataFrame, path: Path, colors: dict | None = None) -> Path | None:
    with _style():
        fig = pareto_figure(runs, colors)
        return None if fig is None else _save(fig, path)


PARETO_CAPTION = (
    "Per task, each strategy's final score as the tables rank it (regret, else test accuracy, "
    "else test mean squared error) against the cost its search spent, in plain-training "
    "equivalents: means over the ok seeds with 95 % Student-t intervals on both axes. The dashed "
    "line joins the Pareto front, the strategies no other is both cheaper than (or as cheap as) "
    "and at least as good as."
)


ADDED_RSS = "resources.added_rss_mb"
WHOLE_RSS = "resources.peak_rss_mb"
CUDA_PEAK = "resources.cuda_peak_mb"


def memory_metrics(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """`(column, axis label)` of each memory panel row: the resident memory a cell adds over its
    worker's warmed-up baseline, or, for records written before that was recorded, the whole
    worker's peak (mostly Python and torch, so it hides what a strategy needs); CUDA when used."""
    ok = _ok(runs)
    metrics = []
    if ADDED_RSS in ok and ok[ADDED_RSS].notna().any():
        metrics.append((ADDED_RSS, "peak RSS added by the cell (MB)"))
    elif ok[WHOLE_RSS].notna().any():
        metrics.append((WHOLE_RSS, "peak RSS of the whole worker process (MB)"))
    if ok[CUDA_PEAK].notna().any():
        metrics.append((CUDA_PEAK, "peak CUDA memory allocated (MB)"))
    return metrics


# Strategies whose mean memory on a task differs by no more than this add "the same" memory.
SAME_MEMORY_MB = 1.0


def memory_differs(runs: pd.DataFrame, column: str) -> bool:
    """Whether, on some task, the strategies' mean memory in `column` differs by more than
    SAME_MEMORY_MB: where every strategy adds the same, a memory figure shows nothing."""
    ok = _ok(runs).dropna(subset=[column])
    for _, cells in ok.groupby("task", sort=False):
        means = cells.groupby("strategy")[column].mean()
        if len(means) and means.max() - means.min() > SAME_MEMORY_MB:
            return True
    return False


def memory_figure(runs: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    """The memory figure of `plot_memory`, not yet saved; None when no memory is recorded, or
    when on every task every strategy adds the same memory (within SAME_MEMORY_MB)."""
    ok = _ok(runs)
    metrics = [(c, label) for c, label in memory_metrics(runs) if memory_differs(runs, c)]
    if not metrics:
        return None
    colors = _colors(runs, colors)
    panels = [
        (str(task), column, label, cells.dropna(subset=[column]))
        for column, label in metrics
        for task, cells in ok.groupby("task", sort=False)
        if cells[column].notna().any()
    ]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    most = max(cells["strategy"].nunique() for *_, cells in panels)
    width = max(8.0, 4.6 * ncols + 1.0)  # room for the title over a single panel
    fig, axes = _figure(nrows, ncols, width=width, height=(1.4 + 0.34 * most) * nrows)
    for ax, (task, column, label, cells) in zip(axes.flat, panels, strict=False):
        # Strategies on the y axis: their names read horizontally, however many there are.
        order = [s for s in colors if s in set(cells["strategy"])]
        with _seeded_numpy():  # seaborn jitters with np.random: the same figure every time
            sns.stripplot(
                data=cells,
                x=column,
                y="strategy",
                order=order,
                hue="strategy",
                hue_order=order,
                palette=colors,
                size=5,
                alpha=0.7,
                jitter=0.15,
                legend=False,
                ax=ax,
            )
        means = cells.groupby("strategy")[column].mean()
        ax.scatter(
            [means[s] for s in order],
            range(len(order)),
            s=90,
            marker="D",
            color=[colors[s] for s in order],
            edgecolor="black",
            linewidth=1.2,
            zorder=3,
        )
        # Room for three rows at least, so one strategy's jitter does not fill the panel.
        ax.set_ylim(max(len(order), 3) - 0.5, -0.5)
        if (cells[column] >= 0).all():
            ax.set_xlim(0, 1.08 * cells[column].max())
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(nbins=5))
        ax.set(title=f"task {task}", xlabel=label, ylabel="")
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    whole = "" if metrics[0][0] == ADDED_RSS else " (whole worker process: older records)"
    fig.suptitle(f"Peak memory per cell{whole}: dots = seeds, diamonds = mean over seeds")
    return fig


def plot_memory(runs: pd.DataFrame, path: Path, colors: dict | None = None) -> Path | None:
    """Peak memory per task and strategy (see `memory_metrics` for which), one dot per seed and
    a diamond at the mean; a second row of panels for CUDA memory when any cell ran on CUDA."""
    with _style():
        fig = memory_figure(runs, colors)
        return None if fig is None else _save(fig, path)


# --- performance profile -----------------------------------------------------------------------


def performance_ratios(runs: pd.DataFrame) -> pd.DataFrame:
    """Dolan–Moré performance ratios over task-seed blocks: one row per ok cell of a block
    (task, seed) where at least two strategies have a result, with `q` (regret on tasks that
    report it, else test error 1 − test accuracy, else test mean squared error; lower is
    better) and `ratio`, q over the block's best q (1 where both are 0, inf where only the best
    is 0)."""
    rows = []
    for _, cells in _ok(runs).groupby("task", sort=False):
        if _has_regret(cells):
            q = cells["final.regret"]
        elif cells["final.test_acc"].notna().any():
            q = 1.0 - cells["final.test_acc"]
        else:  # a regression task's test error, where it reports one
            q = cells.get("final.test_mse", pd.Series(np.nan, index=cells.index))
        # A regret a hair below 0 is rounding in f(λ) − f(λ*); it would flip the ratio's sign.
        rows.append(cells[["task", "seed", "strategy"]].assign(q=q.clip(lower=0.0)))
    frame = pd.concat(rows, ignore_index=True).dropna(subset=["q"])
    blocks = frame.groupby(["task", "seed"], sort=False)
    frame = frame[blocks["strategy"].transform("nunique") >= 2]
    best = frame.groupby(["task", "seed"], sort=False)["q"].transform("min")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(best > 0, frame["q"] / best, np.where(frame["q"] > 0, np.inf, 1.0))
    return frame.assign(ratio=ratio).reset_index(drop=True)


def performance_profile(ratios: pd.DataFrame, taus: np.ndarray) -> dict[str, np.ndarray]:
    """Per strategy, the fraction of the blocks it ran in where its ratio is at most each τ."""
    return {
        str(strategy): (group["ratio"].to_numpy()[:, None] <= taus[None, :]).mean(axis=0)
        for strategy, group in ratios.groupby("strategy", sort=False)
    }


def performance_profile_figure(runs: pd.DataFrame, colors: dict | None = None) -> Figure | None:
    """The figure of `plot_performance_profile`, not yet saved; None without any block."""
    ratios = performance_ratios(runs)
    if ratios.empty:
        return None
    colors = _colors(runs, colors)
    finite = ratios["ratio"][np.isfinite(ratios["ratio"])]
    tau_max = max(1.1, 1.05 * finite.max())
    # The profile changes only at the ratios themselves, so reading it there is exact.
    taus = np.unique(np.concatenate([[1.0, tau_max], finite[finite <= tau_max]]))
    profile = performance_profile(ratios, taus)
    n_blocks = ratios.groupby(["task", "seed"]).ngroups
    fig, axes = _figure(1, 1, width=10.0, height=6.4)
    ax = axes[0, 0]
    blocks = ratios.groupby("strategy")["task"].size()
    order = [s for s in colors if s in profile]
    drawn: dict[str, np.ndarray] = {}
    for strategy in order:
        label, style = f"{strategy} ({blocks[strategy]})", "-"
        # A curve equal to one already drawn would hide it: dashed on top, and the label says so.
        same = [other for other, curve in drawn.items() if np.array_equal(curve, profile[strategy])]
        if same:
            label, style = f"{label}; = {same[0]}", "--"
        ax.step(
            taus, profile[strategy], style, where="post", color=colors[strategy], lw=2, label=label
        )
        drawn[strategy] = profile[strategy]
    _log_scale(ax, "x", taus)
    ax.set(
        xlim=(1.0, tau_max),
        ylim=(-0.02, 1.02),
        xlabel="τ: within a factor τ of the block's best (log)",
        ylabel="fraction of the strategy's blocks",
    )
    _legend_below(fig, *ax.get_legend_handles_labels(), "strategy (blocks it ran in)")
    fig.suptitle(
        f"Performance profile over {n_blocks} task-seed blocks (regret, or test error)\n"
        "each strategy counts only the blocks it ran in"
    )
    return fig


def plot_performance_profile(
    runs: pd.DataFrame, path: Path, colors: dict | None = None
) -> Path | None:
    """Dolan–Moré performance profile (see `performance_ratios`): for each strategy, the fraction
    of the task-seed blocks it ran in where it is within a factor τ of the block's best, as τ
    grows from 1 on a log axis. None when no block has two strategies."""
    with _style():
        fig = performance_profile_figure(runs, colors)
        return None if fig is None else _save(fig, path)


# --- hyper-cleaning example weights ------------------------------------------------------------


def _lambda_panels(runs: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    if "final.lambda_clean" not in runs or "final.lambda_corrupted" not in runs:
        return []
    cells = _ok(runs)
    cells = cells[cells["task_kind"] == "hypercleaning"]
    panels = []
    for (task, strategy), group in cells.groupby(["task", "strategy"], sort=False):
        values = []
        for kind in ("clean", "corrupted"):
            for weights in group[f"final.lambda_{kind}"]:
                if isinstance(weights, list) and weights:
                    values.append(pd.DataFrame({"lambda": weights, "examples": kind}))
        kinds = {frame["examples"].iloc[0] for frame in values}
        if kinds == {"clean", "corrupted"}:
            panels.append((str(task), str(strategy), pd.concat(values, ignore_index=True)))
    return panels


def plot_lambdas(runs: pd.DataFrame, path: Path) -> Path | None:
    """Histograms of the learned hyper-cleaning weights λ of clean vs corrupted training
    examples, one panel per (task, strategy) whose cells report `lambda_clean` and
    `lambda_corrupted`, seeds pooled. None when no cell reports them."""
    panels = _lambda_panels(runs)
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    with _style():
        fig, axes = _figure(nrows, ncols, width=max(7.0, 5.2 * ncols), height=4.4 * nrows)
        for ax, (task, strategy, weights) in zip(axes.flat, panels, strict=False):
            low = min(0.0, weights["lambda"].min())
            high = max(1.0, weights["lambda"].max())
            sns.histplot(
                data=weights,
                x="lambda",
                hue="examples",
                hue_order=list(LAMBDA_COLORS),
                palette=LAMBDA_COLORS,
                bins=np.linspace(low, high, 41),
                stat="probability",
                common_norm=False,
                element="step",
                alpha=0.35,
                ax=ax,
            )
            ax.set(
                title=f"{task} / {strategy} (seeds pooled)",
                xlabel="learned weight λ of a training example",
                ylabel="fraction of examples",
            )
            ax.get_legend().remove()  # one legend below the panels, over no bars
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        handles = [
            mpl.patches.Patch(facecolor=color, edgecolor=color, alpha=0.5)
            for color in LAMBDA_COLORS.values()
        ]
        _legend_below(fig, handles, list(LAMBDA_COLORS), "training examples")
        fig.suptitle("Hyper-cleaning: learned λ of clean vs corrupted examples")
        return _save(fig, path)


def _anytime_caption(runs: pd.DataFrame, trajectories: pd.DataFrame, task: str) -> str:
    points = trajectories[trajectories["task"] == task]
    _, what, log_y = anytime_metric(points, _has_regret(_ok(runs[runs["task"] == task])))
    return (
        f"Task {task}: {what}{' on a log axis' if log_y else ''} against wall-clock and "
        "against cost (seconds; FLOPs in plain-training equivalents, the budget's unit), every ok "
        "strategy: the median over seeds as a step line, the dark band its 95 % percentile "
        "bootstrap interval over seeds, the light band the interquartile range; on tasks judged "
        "by test accuracy a second row shows the incumbent's test accuracy during the search "
        "(before the task's final protocol, whose result the tables report). Each seed "
        "holds its last incumbent to the end of its cell (its wall-clock; its cost budget), so a "
        "strategy with one point is a flat line. An x axis is logarithmic where its values span "
        "more than a factor 10."
    )


def _memory_caption(runs: pd.DataFrame) -> str:
    columns = [column for column, _ in memory_metrics(runs)]
    if ADDED_RSS in columns:
        text = (
            "Peak resident memory (MB) each cell adds over its worker's warmed-up baseline "
            "(the worker's Python and torch excluded)"
        )
    else:
        text = (
            "Peak resident memory (MB) of each cell's whole worker process: these records "
            "predate added_rss_mb, so this is mostly the worker's Python and torch, not what "
            "the strategy needs"
        )
    if CUDA_PEAK in columns:
        text += "; second row: peak CUDA memory allocated in the cell (MB)"
    return text + ". One panel per task; dots = seeds, diamonds = mean over seeds."


def all_figures(
    runs: pd.DataFrame, trajectories: pd.DataFrame, out_dir: Path
) -> list[tuple[Path, str]]:
    """Every figure the data allows, as (path, caption), written under `out_dir`."""
    colors = strategy_colors([str(s) for s in pd.unique(runs["strategy"])])
    figures: list[tuple[Path | None, str]] = []
    for task in (str(t) for t in pd.unique(runs["task"])):
        path = out_dir / f"anytime-{file_stem(task)}.png"
        figures.append(
            (
                plot_anytime(runs, trajectories, task, path, colors),
                _anytime_caption(runs, trajectories, task),
            )
        )
    figures += [
        (
            plot_performance_profile(runs, out_dir / "performance-profile.png", colors),
            "Performance profile (Dolan–Moré) over task-seed blocks with at least two "
            "strategies: q = regret on tasks that report it, else test error (1 − test "
            "accuracy), else test mean squared error. For each strategy, the fraction of the "
            "blocks it ran in where its q is at most τ times the block's best q, τ on a log "
            "axis; a block a strategy did not run in neither counts for nor against it.",
        ),
        (
            plot_accuracy_vs_time(runs, out_dir / "accuracy-vs-time.png", colors),
            "Final test accuracy (%) against each cell's wall-clock (s; log axis where it spans "
            "more than a factor 10), one panel per task: dots = seeds, diamonds = mean over "
            "seeds.",
        ),
        (plot_pareto(runs, out_dir / "pareto.png", colors), PARETO_CAPTION),
        (plot_memory(runs, out_dir / "memory.png", colors), _memory_caption(runs)),
        (
            plot_lambdas(runs, out_dir / "lambdas.png"),
            "Learned hyper-cleaning weights λ of clean vs corrupted training examples, "
            "seeds pooled, one panel per task and strategy that reports them.",
        ),
    ]
    return [(path, caption) for path, caption in figures if path is not None]
