"""Critical-difference diagrams of rank sets, drawn by autorank (Friedman test, Nemenyi
post-hoc test) on a matplotlib `Figure` with the Agg canvas, like every report figure."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hobench.report.plots import _save
from hobench.report.stats import ALPHA, RankSet, nemenyi
from hobench.report.tables import file_stem

DPI = 110


def plot_critical_difference(rank_set: RankSet, path: Path) -> tuple[Path, str] | None:
    """The rank set's CD diagram and its caption; None when autorank cannot analyse it (fewer
    than 3 strategies or 5 complete blocks)."""
    from autorank import plot_stats  # imported lazily, as in stats.nemenyi

    result = nemenyi(rank_set)
    if result is None:
        return None
    n = len(rank_set.strategies)
    height = 1.2 + 0.28 * n
    fig = Figure(figsize=(8.0, height + 0.35), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + 0.35)))
    # Titled with the set it ranks: a report has one diagram per rank set.
    fig.suptitle(
        f"Mean ranks of {n} strategies over {len(rank_set.tasks)} tasks "
        f"({', '.join(rank_set.tasks)})",
        y=0.99,
        va="top",
        fontsize=10,
    )
    # Drawn also when Friedman finds no difference: the caption says so, and one bar then
    # joins every strategy, which is itself the finding.
    with contextlib.redirect_stdout(io.StringIO()):  # autorank prints its tables
        plot_stats(result, allow_insignificant=True, ax=ax)
    _save(fig, path, facecolor="white")
    verdict = (
        f"Friedman p = {result.pvalue:.2g} < {ALPHA}: some mean ranks differ"
        if result.pvalue < ALPHA
        else f"Friedman p = {result.pvalue:.2g} ≥ {ALPHA}: no significant difference in ranks"
    )
    caption = (
        f"Critical-difference diagram (autorank: Friedman and Nemenyi at α = {ALPHA}) of "
        f"{n} strategies over {len(rank_set.blocks)} task-seed blocks of "
        f"{', '.join(rank_set.tasks)}: mean rank on the axis (1 = best); strategies joined by a "
        f"bar do not differ significantly; CD = {result.cd:.2f} ranks. {verdict}."
    )
    return path, caption


def critical_difference_figures(
    rank_sets: list[RankSet], directory: Path
) -> list[tuple[Path, str]]:
    figures = []
    for i, rank_set in enumerate(rank_sets):
        name = file_stem(f"critical-difference-{i + 1}") + ".png"
        figure = plot_critical_difference(rank_set, directory / name)
        if figure is not None:
            figures.append(figure)
    return figures
