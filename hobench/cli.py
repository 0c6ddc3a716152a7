"""The `hobench` command: run | list | show | report | compare | track | history | references.

User errors (a bad suite, a missing file, an unknown name, ...) print one line
`hobench: error: ...` and exit 2; set HOBENCH_TRACEBACK=1 to see the traceback instead.
Exit codes: 0 all ok, 1 failed cells or regressions, 2 bad input, 130 interrupted, 141 the
reader of stdout went away (`hobench show DIR | head`): nothing is printed then.
"""

from __future__ import annotations

import argparse
import errno
import inspect
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `yes | head` reports for `yes`
TRACEBACK_ENV = "HOBENCH_TRACEBACK"


class UsageError(ValueError):
    """A command line that names nothing to do."""


# Exceptions that mean bad input, not a bug: reported in one line, exit 2.
USER_ERRORS = (
    ("hobench.harness.suite", "SuiteError"),
    ("hobench.harness.suite", "PluginError"),
    ("hobench.harness.store", "StoreError"),
    ("hobench.harness.budget", "BudgetError"),
    ("hobench.harness.measure", "DeviceError"),
    ("hobench.harness.ray_executor", "RayUnavailable"),
    ("hobench.data.errors", "DataError"),
    ("hobench.registry", "UnknownName"),
    ("hobench.report.errors", "ReportError"),
)


def _user_errors() -> tuple[type[BaseException], ...]:
    # Only a loaded module can have raised its error, so nothing is imported here (importing the
    # report package alone takes seconds).
    found: list[type[BaseException]] = [UsageError, OSError]
    for module, name in USER_ERRORS:
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def _results_file(path: str) -> Path:
    from hobench.harness.store import runs_file

    runs = runs_file(path)
    if not runs.is_file():
        raise FileNotFoundError(
            errno.ENOENT, "no results file (give runs.jsonl or its directory)", str(runs)
        )
    return runs


def cmd_run(args: argparse.Namespace) -> int:
    from hobench.harness.suite import load_suite, resolve_suite_path

    suite = load_suite(resolve_suite_path(args.suite))  # before the heavy imports: fail fast

    from hobench.harness.runner import run_suite
    from hobench.harness.show import format_table
    from hobench.harness.store import ResultsStore

    keys = [cell.key for cell in suite.cells() if not args.only or args.only in cell.key]
    if not keys:
        raise UsageError(
            f"--only {args.only!r} matches no cell of suite {suite.name} "
            "(cell keys look like task/strategy/seed)"
        )
    results_dir = Path(args.results_dir or Path("results") / suite.name)
    summary = run_suite(
        suite,
        results_dir,
        jobs=args.jobs,
        force=args.force,
        data_dir=args.data_dir,
        device=args.device,
        quiet=args.quiet,
        cell_filter=args.only,
        retry_failed=args.retry_failed,
        wait=not args.no_wait,
        executor=args.executor,
        address=args.address,
    )
    records = ResultsStore(results_dir).load()
    print(format_table(records))
    ran = f"{summary.ran} cell(s) run in {summary.wall_s:.1f}s, {summary.skipped} already done"
    if summary.interrupted:
        print(
            f"hobench: interrupted after {ran}; finished cells are kept in "
            f"{summary.results_path}; rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    failed = [r for r in records if r["cell"] in set(keys) and r.get("status") != "ok"]
    if summary.warmed:
        print(
            f"hobench: compiled {summary.warmed} task x strategy pair(s) in "
            f"{summary.compile_s:.1f}s before the cells, off their clocks (once on this machine)",
            file=sys.stderr,
        )
    print(
        f"hobench: {ran}; {len(keys) - len(failed)} ok, {len(failed)} failed; "
        f"results: {summary.results_path}",
        file=sys.stderr,
    )
    for record in failed:
        print(f"hobench: failed: {record['cell']}: {record.get('error')}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _summary(cls: type) -> str:
    """The first paragraph of a class's own docstring, whole (an inherited one says nothing
    about it)."""
    paragraph = inspect.cleandoc(cls.__dict__.get("__doc__") or "").split("\n\n")[0]
    return " ".join(paragraph.split())


def _describe(registry, name: str, hidden: Sequence[str] = ()) -> list[str]:
    import shutil
    import textwrap

    summary = _summary(registry.get(name)) or "(no description)"
    params = {k: v for k, v in registry.parameters(name).items() if k not in hidden}
    shown = " ".join(
        f"{k}={'(required)' if v is inspect.Parameter.empty else repr(v)}"
        for k, v in params.items()
    )
    # Wrapped, never cut: the description is the only help a name has here.
    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
    lines = [f"  {name}"]
    lines += textwrap.wrap(summary, width, initial_indent="      ", subsequent_indent="      ")
    lines += textwrap.wrap(
        shown, width, initial_indent="      params: ", subsequent_indent="        "
    )
    return lines


def _registries() -> tuple:
    """The tasks' and strategies' registries: the saved catalog (no torch import) when fresh,
    else the imported ones, which are then saved for the next command."""
    from hobench import catalog

    saved = catalog.cached()
    if saved is not None:
        return saved
    from hobench.harness.suite import load_registries
    from hobench.registry import STRATEGIES, TASKS

    load_registries()
    catalog.save()
    return TASKS, STRATEGIES


def cmd_list(args: argparse.Namespace) -> int:
    from hobench.harness.suite import HARNESS_TASK_KEYS, SuiteError, check_suite, suite_dirs

    tasks, strategies = _registries()
    lines = ["tasks:"]
    for name in tasks.names():
        lines += _describe(tasks, name, hidden=tuple(HARNESS_TASK_KEYS))
    lines.append("strategies:")
    for name in strategies.names():
        lines += _describe(strategies, name)
    for directory in suite_dirs():
        lines.append(f"suites ({directory}/):")
        for path in sorted(directory.glob("*.toml")):
            try:
                suite = check_suite(path)
            except SuiteError as exc:
                lines.append(f"  {path.stem} - invalid: {exc}")
                continue
            about = f" - {suite.description}" if suite.description else ""
            lines.append(f"  {suite.name} ({len(suite.cells())} cells){about}")
    print("\n".join(lines))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from hobench.harness.show import format_table, table_json
    from hobench.harness.store import ResultsStore

    records = ResultsStore(_results_file(args.results)).load()
    print(table_json(records) if args.format == "json" else format_table(records))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from hobench.report import write_report

    out = {"out_dir": Path(args.out)} if args.out else {}  # default: <results>/report/
    print(write_report(Path(args.results), engine=args.engine, **out))
    return EXIT_OK


def cmd_references(args: argparse.Namespace) -> int:
    from hobench.tasks.alive import format_rows, reference_rows

    print(format_rows(reference_rows(args.seed, args.source, args.data_dir)))
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from hobench.report import compare, format_compare

    result = compare(
        Path(args.baseline),
        Path(args.current),
        acc_tolerance=args.acc_tolerance,
        time_ratio=args.time_ratio,
        memory_ratio=args.memory_ratio,
        allow_different_suites=args.allow_different_suites,
        calibration_tolerance=args.calibration_tolerance,
    )
    if args.format == "json":
        from hobench.report.compare import compare_json

        print(compare_json(result))
    else:
        print(format_compare(result))
    return EXIT_FAILED if result.regressions else EXIT_OK


def cmd_track(args: argparse.Namespace) -> int:
    from hobench.report.history import track

    entry = track(args.results, args.history, commit=args.commit, date=args.date)
    print(
        f"hobench: tracked {entry['source']} {entry['name']} at commit {entry['commit'][:12]} "
        f"({entry['date']}): {len(entry['metrics'])} metric(s) -> {args.history}",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from hobench.report.history import (
        find_steps,
        format_history,
        history_json,
        plot_history,
        read_history,
    )

    frame = read_history(args.history)
    if args.metric:
        frame = frame[frame["metric"].str.contains(args.metric, regex=False)]
    frame = find_steps(frame)
    print(history_json(frame) if args.format == "json" else format_history(frame, args.last))
    if args.plot and not frame.empty:
        print(f"hobench: plot: {plot_history(frame, args.plot)}", file=sys.stderr)
    return EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    from hobench.harness.suite import MAX_SEED

    value = int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be in 0..{MAX_SEED}, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _ratio_at_least_one(text: str) -> float:
    value = float(text)
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"must be a factor >= 1, got {text}")
    return value


def _device(text: str) -> str:
    from hobench.harness.suite import DEVICE_PATTERN

    if not DEVICE_PATTERN.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not cpu, cuda, cuda:N or auto")
    return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hobench")
    except PackageNotFoundError:  # run from a checkout that was never installed
        import hobench

        return hobench.__version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hobench", description="Benchmark hyperparameter-optimization strategies."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    verbs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = verbs.add_parser("run", help="run a suite (resumes: finished cells are skipped)")
    run.add_argument(
        "suite", help="suite file, or a suite name: ./suites/NAME.toml, else hobench's own"
    )
    run.add_argument("--jobs", "-j", type=_positive_int, default=1, help="parallel workers")
    run.add_argument("--device", type=_device, help="override the suite's device")
    run.add_argument("--data-dir", help="where tasks find or download their data")
    run.add_argument("--results-dir", help="default: results/<suite name>")
    run.add_argument("--force", action="store_true", help="rerun cells that already finished")
    run.add_argument(
        "--retry-failed", action="store_true", help="rerun failed cells (ok ones are kept)"
    )
    run.add_argument(
        "--no-wait",
        action="store_true",
        help="refuse, instead of waiting, when another run writes to the results dir",
    )
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: worker processes here (default); ray: Ray tasks (pip install 'hobench[ray]')",
    )
    run.add_argument(
        "--address", help="with --executor ray: the cluster's address (default: a local one)"
    )
    run.add_argument("--quiet", "-q", action="store_true", help="print only failures and summary")
    run.add_argument("--only", metavar="SUBSTRING", help="run only cells whose key contains it")
    run.set_defaults(handler=cmd_run)

    listing = verbs.add_parser("list", help="list tasks, strategies and suites")
    listing.set_defaults(handler=cmd_list)

    show = verbs.add_parser("show", help="print a table of results")
    show.add_argument("results", help="results directory or runs.jsonl")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.set_defaults(handler=cmd_show)

    report = verbs.add_parser("report", help="write the comparison report of results")
    report.add_argument("results", help="results directory")
    report.add_argument("--out", help="report directory (default: RESULTS/report)")
    report.add_argument(
        "--engine",
        metavar="JSON",
        help="engine-benchmark summary to show beside the suite (results/engine-bench.json)",
    )
    report.set_defaults(handler=cmd_report)

    refs = verbs.add_parser(
        "references", help="print the tasks' reference rows (Oracle, Baseline, Vanilla)"
    )
    refs.add_argument("--seed", type=_seed, default=0)
    refs.add_argument("--source", default="embedded", help="embedded (default) or full MNIST")
    refs.add_argument("--data-dir", default=None, help="cache directory for full MNIST")
    refs.set_defaults(handler=cmd_references)

    comp = verbs.add_parser("compare", help="compare results against a baseline (exit 1: worse)")
    comp.add_argument("baseline", help="baseline results directory")
    comp.add_argument("current", help="current results directory")
    comp.add_argument(
        "--time-ratio",
        type=_positive_float,
        default=1.5,
        help="flag calibrated time above baseline x R (default 1.5)",
    )
    comp.add_argument(
        "--calibration-tolerance",
        type=_ratio_at_least_one,
        default=1.25,  # compare.CALIBRATION_TOLERANCE, not imported: the report loads slowly
        help="gate time only when all calibrations agree within this factor (default 1.25); "
        "otherwise time is not compared",
    )
    comp.add_argument(
        "--memory-ratio",
        type=_positive_float,
        default=1.5,
        help="flag peak memory above baseline x R (default 1.5)",
    )
    comp.add_argument(
        "--acc-tolerance",
        type=_positive_float,
        default=None,
        help="flag test accuracy below baseline minus T",
    )
    comp.add_argument(
        "--allow-different-suites",
        action="store_true",
        help="compare the cells two different suites share (refused by default: exit 2)",
    )
    comp.add_argument("--format", choices=("text", "json"), default="text")
    comp.set_defaults(handler=cmd_compare)

    tracking = verbs.add_parser(
        "track", help="append a run's summary (suite results or pytest-benchmark JSON) to a history"
    )
    tracking.add_argument("results", help="results directory, runs.jsonl or pytest-benchmark JSON")
    tracking.add_argument("--history", required=True, help="history file (JSON lines), appended")
    tracking.add_argument("--commit", help="default: the git commit in the results' manifest")
    tracking.add_argument("--date", help="ISO date (default: the run's latest start)")
    tracking.set_defaults(handler=cmd_track)

    hist = verbs.add_parser(
        "history", help="print and plot each metric over tracked commits; flag step changes"
    )
    hist.add_argument("history", help="history file written by `hobench track`")
    hist.add_argument("--metric", metavar="SUBSTRING", help="only metrics whose name contains it")
    hist.add_argument("--plot", metavar="PNG", help="also write a plot of the metrics")
    hist.add_argument("--last", type=_positive_int, default=6, help="entries shown per metric")
    hist.add_argument("--format", choices=("text", "json"), default="text")
    hist.set_defaults(handler=cmd_history)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except BrokenPipeError:
        # `hobench show DIR | head`: the reader has all it wanted. Point stdout at /dev/null so
        # the interpreter's final flush does not fail again, and exit as a SIGPIPE'd tool does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("hobench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _user_errors() as exc:
        if os.environ.get(TRACEBACK_ENV):
            raise
        message = " ".join(str(exc).split()) or "(no message)"
        print(f"hobench: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return EXIT_USAGE
