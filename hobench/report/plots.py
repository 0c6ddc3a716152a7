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

from hobench.report.tables import file_stem

DPI = 110
GRID_POINTS = 200
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
def _style() -> Iterator[None]:
    # rcParams are read when artists are created, so drawing happens inside this context.
    with sns.axes_style("whitegrid"), mpl.rc_context(STYLE):
        yield


def _figure(nrows: int, ncols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def strategy_colors(strategies: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One stable colour per strategy, shared by every figure of a report."""
    palette = sns.color_palette("tab10" if len(strategies) <= 10 else "husl", len(strategies))
    return dict(zip(strategies, palette, strict=True))


def _colors(frame: pd.DataFrame, colors: dict | None) -> dict:
    return colors or strategy_colors([str(s) for s in pd.unique(frame["strategy"])])


def _maybe_log_x(ax: Axes, values: np.ndarray) -> None:
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > LOG_X_SPAN:
        ax.set_xscale("log")
        # Plain numbers at 1-2-5 steps read better than matplotlib's default 4×10^0 labels.
        ax.xaxis.set_major_locator(mpl.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())


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


def common_grid(values: np.ndarray, n: int = GRID_POINTS) -> np.ndarray:
    """Grid over the observed x values: geometric when they span more than a decade."""
    values = values[np.isfinite(values)]
    positive = values[values > 0]
    low = positive.min() if positive.size else 0.0
    high = max(values.max(), low)
    if low > 0 and high / low > LOG_X_SPAN:
        return np.geomspace(low, high, n)
    return np.linspace(low, high, n)


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


# Wall-clock is what a user waits for; cost (FLOPs, in plain-training equivalents) is the
# budget's unit, the same on every machine.
ANYTIME_AXES = (
    ("elapsed_s", "wall-clock (s)", "vs wall-clock"),
    ("cost", "cost (plain-training equivalents)", "vs cost"),
)


def _anytime_panel(ax: Axes, points: pd.DataFrame, x: str, colors: dict) -> None:
    # Records written before a field existed lack it: such a panel says so instead of failing.
    points = points.dropna(subset=[x])
    if points.empty:
        ax.text(0.5, 0.5, f"no {x} recorded", transform=ax.transAxes, ha="center", va="center")
        ax.set(xticks=[], yticks=[])
        return
    grid = common_grid(points[x].to_numpy())
    for strategy, group in points.groupby("strategy", sort=False):
        # Each strategy is drawn up to its own last point, not to the slowest strategy's end.
        reach = grid[grid <= group[x].max()]
        curves = np.array(
            [
                step_values(seed[x].to_numpy(), seed["incumbent_val_loss"].to_numpy(), reach)
                for _, seed in group.groupby("seed")
            ]
        )
        defined, median, q25, q75 = median_band(curves)
        if not defined.any():
            continue
        color = colors[str(strategy)]
        label = f"{strategy} (n={len(curves)})"
        ax.step(reach[defined], median, where="post", color=color, lw=2, label=label)
        ax.fill_between(reach[defined], q25, q75, step="post", color=color, alpha=0.2, lw=0)
    _maybe_log_x(ax, grid)


def _legend_on_last_drawn(axes: Sequence[Axes]) -> None:
    # The rightmost panel with lines carries the legend; an empty panel would warn and mislead.
    for ax in reversed(list(axes)):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title="strategy (seeds)", loc="upper right")
            return


def plot_anytime(
    trajectories: pd.DataFrame, task: str, path: Path, colors: dict | None = None
) -> Path | None:
    """Incumbent validation loss vs wall-clock (left) and vs cost in plain-training
    equivalents (right) for one task: median over seeds with the interquartile band, one line
    per strategy. A panel whose x is missing from every point (older records) says so."""
    points = trajectories[(trajectories["task"] == task) & (trajectories["status"] == "ok")]
    if not points["incumbent_val_loss"].notna().any():
        return None
    colors = _colors(points, colors)
    with _style():
        fig, axes = _figure(1, 2, width=12.5, height=4.8)
        for ax, (x, label, title) in zip(axes[0], ANYTIME_AXES, strict=True):
            _anytime_panel(ax, points, x, colors)
            ax.set(xlabel=label, ylabel="incumbent validation loss", title=title)
        _legend_on_last_drawn(axes[0])
        fig.suptitle(f"Anytime performance, task {task}: median over seeds, band = quartiles")
        return _save(fig, path)


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
        fig, axes = _figure(nrows, ncols, width=4.6 * ncols + 1.8, height=4.2 * nrows)
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
        handles = [
            mpl.lines.Line2D([], [], marker="o", ls="", color=c, markersize=8, label=s)
            for s, c in colors.items()
            if s in set(ok["strategy"])
        ]
        fig.legend(handles=handles, title="strategy", loc="outside right upper")
        fig.suptitle("Accuracy vs time: dots = seeds, diamonds = mean over seeds")
        return _save(fig, path)


MEMORY_METRICS = (
    ("resources.peak_rss_mb", "peak RSS of the cell's process (MB)", "resident set (CPU)"),
    ("resources.cuda_peak_mb", "peak CUDA memory allocated (MB)", "CUDA"),
)


def plot_memory(runs: pd.DataFrame, path: Path, colors: dict | None = None) -> Path | None:
    """Peak memory per task and strategy: bars = mean over seeds, whiskers = min–max; a
    second panel for CUDA memory when any cell ran on CUDA."""
    ok = _ok(runs)
    metrics = [metric for metric in MEMORY_METRICS if ok[metric[0]].notna().any()]
    if not metrics:
        return None
    colors = _colors(runs, colors)
    order = [s for s in colors if s in set(ok["strategy"])]
    n_tasks = ok["task"].nunique()
    with _style():
        width = max(6.5, 1.0 + 0.55 * n_tasks * len(order)) * len(metrics)
        fig, axes = _figure(1, len(metrics), width=width, height=4.8)
        for ax, (column, label, title) in zip(axes[0], metrics, strict=True):
            sns.barplot(
                data=ok,
                x="task",
                y=column,
                hue="strategy",
                hue_order=order,
                palette=colors,
                errorbar=("pi", 100),
                capsize=0.15,
                err_kws={"linewidth": 1.2},
                ax=ax,
            )
            ax.set(xlabel="task", ylabel=label, title=title)
            ax.get_legend().remove()  # one legend for the figure, beside the last panel
        axes[0][-1].legend(title="strategy", loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.suptitle("Peak memory: bars = mean over seeds, whiskers = min–max")
        return _save(fig, path)


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
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        fig.suptitle("Hyper-cleaning: learned λ of clean vs corrupted examples")
        return _save(fig, path)


def all_figures(
    runs: pd.DataFrame, trajectories: pd.DataFrame, out_dir: Path
) -> list[tuple[Path, str]]:
    """Every figure the data allows, as (path, caption), written under `out_dir`."""
    colors = strategy_colors([str(s) for s in pd.unique(runs["strategy"])])
    figures: list[tuple[Path | None, str]] = []
    for task in (str(t) for t in pd.unique(runs["task"])):
        path = out_dir / f"anytime-{file_stem(task)}.png"
        caption = (
            f"Task {task}: incumbent validation loss against wall-clock and against cost (FLOPs "
            "in plain-training equivalents, the budget's unit); median over seeds (each seed's "
            "step function read on a common grid), band = interquartile."
        )
        figures.append((plot_anytime(trajectories, task, path, colors), caption))
    figures += [
        (
            plot_accuracy_vs_time(runs, out_dir / "accuracy-vs-time.png", colors),
            "Final test accuracy against each cell's wall-clock.",
        ),
        (
            plot_memory(runs, out_dir / "memory.png", colors),
            "Peak memory of each cell (resident set; CUDA when used).",
        ),
        (
            plot_lambdas(runs, out_dir / "lambdas.png"),
            "Learned hyper-cleaning weights of clean vs corrupted training examples.",
        ),
    ]
    return [(path, caption) for path, caption in figures if path is not None]
