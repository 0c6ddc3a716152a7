"""Statistics the report uses, each from a maintained library: t-intervals, Wilcoxon signed-rank
tests and the Friedman test (scipy), Holm's correction (statsmodels), Friedman/Nemenyi ranks and
critical differences (autorank). Seeds are paired blocks: every strategy of a task runs on the
same data split, so strategies are compared seed by seed.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

N_BOOT = 10_000
LEVEL = 0.95
ALPHA = 0.05  # significance level of every test in the report


def _finite(values: Iterable[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values if hasattr(values, "__len__") else list(values), dtype=float).ravel()
    return x[~np.isnan(x)]


def t_interval(
    values: Iterable[float] | np.ndarray, level: float = LEVEL
) -> tuple[float, float, float]:
    """`(mean, low, high)`: Student's t confidence interval of the mean (NaN values dropped).

    One value gives `(v, nan, nan)`: no spread was measured, so no interval is claimed; equal
    values give a zero-width interval.
    """
    x = _finite(values)
    if x.size == 0:
        return (math.nan,) * 3
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    if np.all(x == x[0]):
        return mean, mean, mean
    sem = float(scipy_stats.sem(x))
    low, high = scipy_stats.t.interval(level, x.size - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def binomial_se(accuracy: float, n_test: float) -> float:
    """Standard error of an accuracy measured on `n_test` examples: sqrt(p (1 - p) / n). It is
    the noise of one test-set evaluation, whatever the number of seeds."""
    if not n_test or math.isnan(accuracy) or math.isnan(n_test):
        return math.nan
    return math.sqrt(accuracy * (1.0 - accuracy) / n_test)


def wilcoxon_p(differences: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of paired differences (scipy; exact
    distribution for small samples without ties). All differences zero: 1.0 (no evidence of any
    difference); fewer than 2 non-zero pairs cannot reach any level, and also give their p."""
    d = _finite(differences)
    if d.size == 0 or not np.any(d != 0):
        return 1.0
    return float(scipy_stats.wilcoxon(d).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels' multipletests), in the input order."""
    if not len(p_values):
        return []
    return [float(p) for p in multipletests(list(p_values), alpha=ALPHA, method="holm")[1]]


def score_metric(cells: pd.DataFrame) -> tuple[str, bool]:
    """The column a task is judged by and whether higher is better: regret (lower) where the
    task reports it, else test accuracy (higher), else test mean squared error (lower; a
    regression task), else validation loss (lower; a task of a plugin may report none)."""
    ok = cells[cells["status"] == "ok"]
    if lower_is_better(ok):
        return "final.regret", False
    if "final.test_acc" in ok and ok["final.test_acc"].notna().any():
        return "final.test_acc", True
    if "final.test_mse" in ok and ok["final.test_mse"].notna().any():
        return "final.test_mse", False
    return "final.val_loss", False


def paired_vs_best(cells: pd.DataFrame) -> pd.DataFrame:
    """Each strategy of one task against the task's best (by mean, among the strategies with no
    failed seed): Wilcoxon signed-rank over the seeds both finished, Holm-corrected over the
    strategies compared.

    Returns one row per strategy: `mean`, `best` (bool), `n_pairs`, `p` (raw), `p_holm`,
    `median_gain` (median over seeds of the strategy's advantage over the best, oriented so
    that positive is better), `worse` (significant at ALPHA after Holm, median against it) and
    `better_median` (significant, median for it although its mean is lower: outliers decide
    the mean). The best's p's are NaN.
    """
    metric, higher = score_metric(cells)
    ok = cells[cells["status"] == "ok"]
    by_seed = ok.pivot_table(index="seed", columns="strategy", values=metric, aggfunc="first")
    means = by_seed.mean()
    if means.dropna().empty:
        columns = ["mean", "best", "n_pairs", "p", "median_gain", "p_holm", "worse"]
        return pd.DataFrame(columns=[*columns, "better_median"])
    # The best is a strategy that finished every seed: a mean over the seeds that did not
    # diverge would reward the divergence.
    failed = set(map(str, cells.loc[cells["status"] != "ok", "strategy"]))
    candidates = means[[str(s) not in failed for s in means.index]].dropna()
    candidates = candidates if not candidates.empty else means
    best = str(candidates.idxmax() if higher else candidates.idxmin())
    rows = {}
    for strategy in by_seed.columns:
        # Paired by seed: the seeds both ran (differences of 0 against itself for the best).
        pairs = by_seed[strategy].to_frame("x").join(by_seed[best].rename("b")).dropna()
        differences = pairs["x"] - pairs["b"]
        rows[str(strategy)] = {
            "mean": float(means[strategy]),
            "best": strategy == best,
            "n_pairs": len(pairs),
            "p": math.nan if strategy == best else wilcoxon_p(differences),
            # The best is the best by mean; a seed-by-seed majority may still favour the other.
            "median_gain": float(differences.median() if higher else -differences.median()),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    others = table.index[~table["best"]]
    table["p_holm"] = math.nan
    table.loc[others, "p_holm"] = holm(table.loc[others, "p"].tolist())
    significant = table["p_holm"] < ALPHA
    table["worse"] = significant & (table["median_gain"] < 0)
    table["better_median"] = significant & (table["median_gain"] > 0)
    table.index.name = "strategy"
    return table


def friedman(blocks: pd.DataFrame) -> tuple[float, float]:
    """Friedman's chi-square statistic and p-value (scipy) over complete blocks: rows are
    blocks (task-seeds), columns strategies; NaN for fewer than 3 strategies or 2 blocks."""
    if blocks.shape[1] < 3 or blocks.shape[0] < 2:
        return math.nan, math.nan
    result = scipy_stats.friedmanchisquare(*(blocks[c].to_numpy() for c in blocks.columns))
    return float(result.statistic), float(result.pvalue)


@dataclass
class RankSet:
    """Strategies ranked together over the tasks on which every one of them ran."""

    strategies: list[str]
    tasks: list[str]
    blocks: pd.DataFrame  # (task, seed) × strategy scores, higher is better; complete rows only
    dropped: int  # task-seeds left out because some strategy failed there


def rank_sets(runs: pd.DataFrame) -> list[RankSet]:
    """The sets of strategies a report can rank fairly: (a) the strategies that ran on every
    task, over all tasks; (b) every strategy, over the tasks where all of them ran. Sets with
    fewer than 2 strategies or no task are left out; (b) is left out when it equals (a)."""
    ok = runs[runs["status"] == "ok"]
    tasks = [str(t) for t in pd.unique(runs["task"])]
    ran = {t: set(map(str, ok.loc[ok["task"] == t, "strategy"])) for t in tasks}
    strategies = [str(s) for s in pd.unique(runs["strategy"])]
    everywhere = [s for s in strategies if all(s in ran[t] for t in tasks)]
    full_tasks = [t for t in tasks if all(s in ran[t] for s in strategies)]
    candidates = [(everywhere, tasks), (strategies, full_tasks)]
    sets: list[RankSet] = []
    for members, over in candidates:
        if (
            len(members) < 2
            or not over
            or any(members == s.strategies and over == s.tasks for s in sets)
        ):
            continue
        sets.append(_rank_set(runs, members, over))
    return sets


def _rank_set(runs: pd.DataFrame, strategies: list[str], tasks: list[str]) -> RankSet:
    """The blocks (task, seed) × strategies of scores, higher better; a failed cell (a
    diverged search) scores below every finished one of its block, last, rather than dropping
    the block (which would rank the strategy on the seeds it survived)."""
    frames = []
    for task in tasks:
        cells = runs[(runs["task"] == task) & runs["strategy"].isin(strategies)]
        metric, higher = score_metric(cells[cells["status"] == "ok"])
        value = cells[metric].where(cells["status"] == "ok", -math.inf if higher else math.inf)
        scores = cells.assign(score=value).pivot_table(
            index="seed", columns="strategy", values="score", aggfunc="first"
        )
        scores = (scores if higher else -scores).reindex(columns=strategies)
        # Below every finished score of its block (a finite value: autorank tests the values).
        floor = scores[np.isfinite(scores)].min(axis=1)
        scores = scores.mask(np.isneginf(scores), floor - floor.abs() - 1.0, axis=0)
        frames.append(scores.assign(task=task))
    table = pd.concat(frames).reset_index().set_index(["task", "seed"])[strategies]
    complete = table.dropna()
    return RankSet(strategies, tasks, complete, dropped=len(table) - len(complete))


def block_ranks(blocks: pd.DataFrame) -> pd.DataFrame:
    """Rank of each strategy within each block (1 = best; ties share the average rank)."""
    return blocks.rank(axis=1, ascending=False, method="average")


def nemenyi(rank_set: RankSet):
    """autorank's Friedman/Nemenyi analysis of a rank set (mean ranks, critical difference),
    for the critical-difference diagram; None with fewer than 3 strategies or 5 blocks (autorank
    needs at least 5 paired samples)."""
    from autorank import autorank  # imported lazily: it pulls in statsmodels' plotting stack

    blocks = rank_set.blocks
    if blocks.shape[1] < 3 or blocks.shape[0] < 5:
        return None
    data = blocks.reset_index(drop=True)
    with contextlib.redirect_stdout(io.StringIO()):  # autorank prints notes and tables
        return autorank(data, alpha=ALPHA, order="descending", force_mode="nonparametric")


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
