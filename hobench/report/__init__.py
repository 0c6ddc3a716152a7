"""Reports regenerated from results JSON lines only (a report never trains), and `compare`,
the regression gate between two results directories."""

from hobench.report.build import write_report
from hobench.report.compare import CompareResult, compare, format_compare
from hobench.report.errors import ReportError
from hobench.report.load import load_runs, load_trajectories, read_records
from hobench.report.plots import (
    plot_accuracy_vs_time,
    plot_anytime,
    plot_lambdas,
    plot_memory,
    plot_performance_profile,
)
from hobench.report.stats import bootstrap_ci, paired_vs_best, rank_sets, t_interval
from hobench.report.tables import (
    Table,
    all_tables,
    auxtarget_tables,
    cost_model_table,
    hypercleaning_tables,
    rank_table,
    task_table,
    to_html,
    to_latex,
    to_markdown,
)

__all__ = [
    "CompareResult",
    "ReportError",
    "Table",
    "all_tables",
    "auxtarget_tables",
    "bootstrap_ci",
    "compare",
    "cost_model_table",
    "format_compare",
    "hypercleaning_tables",
    "load_runs",
    "load_trajectories",
    "plot_accuracy_vs_time",
    "plot_anytime",
    "plot_lambdas",
    "paired_vs_best",
    "plot_memory",
    "plot_performance_profile",
    "rank_sets",
    "rank_table",
    "read_records",
    "t_interval",
    "task_table",
    "to_html",
    "to_latex",
    "to_markdown",
    "write_report",
]
