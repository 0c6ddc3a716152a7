"""Statistics the tables use: a seeded percentile bootstrap and mean ranks across tasks."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

N_BOOT = 10_000
LEVEL = 0.95


def bootstrap_ci(
    values: Iterable[float] | np.ndarray,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap of the mean: `(mean, low, high)`.

    Draws `n_boot` resamples of the values with replacement from `numpy.random.default_rng(seed)`
    (indices `rng.integers(0, n, size=(n_boot, n))`), takes each resample's mean and returns the
    `(1 - level) / 2` and `(1 + level) / 2` quantiles of those means. Deterministic for a seed.

    NaN values are dropped before anything else (a missing metric is not a number to average);
    with no value left the result is `(nan, nan, nan)`. One value, or all values equal, gives
    `(v, v, v)`: the resampling could only reproduce it.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    x = np.asarray(values if hasattr(values, "__len__") else list(values), dtype=float).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (float("nan"),) * 3
    if np.all(x == x[0]):
        return (float(x[0]),) * 3
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(x.mean()), float(low), float(high)


def lower_is_better(runs: pd.DataFrame) -> bool:
    """Whether a task's cells are ranked by regret (any non-null) rather than test accuracy."""
    return bool(runs["final.regret"].notna().any())


def mean_rank(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean rank of each strategy across tasks (1 = best), from the ok cells of `runs`.

    Per task, strategies are ranked by their mean over seeds of the final test accuracy (higher
    is better) or, where the task reports any regret, of the regret (lower is better); ties get
    the average of the tied ranks. Returns one row per strategy (index) with a column per task
    (its rank there, NaN where it has no ok cell), `mean_rank` over the tasks it was ranked on,
    and `n_tasks`; sorted by mean rank. A strategy missing on a task is not ranked there rather
    than ranked last, so compare `n_tasks` before comparing mean ranks.
    """
    ok = runs[runs["status"] == "ok"]
    ranks: dict[str, pd.Series] = {}
    for task, cells in ok.groupby("task", sort=False):
        by_regret = lower_is_better(cells)
        metric = "final.regret" if by_regret else "final.test_acc"
        means = cells.groupby("strategy", sort=False)[metric].mean()
        ranks[str(task)] = means.rank(ascending=by_regret, method="average")
    table = pd.DataFrame(ranks)
    tasks = list(ranks)
    table["mean_rank"] = table[tasks].mean(axis=1) if tasks else pd.Series(dtype=float)
    table["n_tasks"] = table[tasks].notna().sum(axis=1).astype(int)
    table.index.name = "strategy"
    return table.sort_values("mean_rank", kind="stable")
