"""`write_report`: results JSON lines in, tables, figures, REPORT.md and index.html out.

A report never trains: it reads `runs.jsonl` and nothing else, so it can be rebuilt anywhere.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from hobench.harness.store import SUITE_FILE
from hobench.report.critical_difference import critical_difference_figures
from hobench.report.crossover import (
    CROSSOVER_FIGURE,
    crossover_caption,
    crossover_frame,
    crossover_tables,
    plot_crossover,
)
from hobench.report.engine import engine_table
from hobench.report.errors import ReportError
from hobench.report.html import (
    Block,
    BulletList,
    FigureBlock,
    Heading,
    Paragraph,
    render_page,
)
from hobench.report.load import read_records, runs_frame, runs_path, trajectories_frame
from hobench.report.plots import all_figures, strategy_colors
from hobench.report.stats import rank_sets
from hobench.report.tables import (
    COST_MODEL_NAME,
    SUMMARY_NAME,
    Table,
    all_tables,
    narrow,
    to_latex,
    to_markdown,
)

REPORT_DIR = "report"


def _distinct(values: Iterable[object]) -> str:
    seen = list(dict.fromkeys(str(v) for v in values if v is not None and v != ""))
    if not seen:
        return "unknown"
    return seen[0] if len(seen) == 1 else "mixed: " + ", ".join(seen)


def manifest_summary(runs: pd.DataFrame) -> list[str]:
    """One line per manifest field the header shows; fields that differ between cells say so."""
    manifests = [m for m in runs["manifest"] if isinstance(m, dict)]

    def field(key: str) -> str:
        return _distinct(m.get(key) for m in manifests)

    devices = _distinct(f"{m.get('device')} ({m.get('device_name')})" for m in manifests)
    torch_version = _distinct((m.get("packages") or {}).get("torch") for m in manifests)
    started = sorted(str(m["started_at"]) for m in manifests if m.get("started_at"))
    date = "unknown" if not started else started[0]
    if started and started[-1] != started[0]:
        date = f"{started[0]} to {started[-1]}"
    return [
        f"hobench version: {field('hobench')}",
        f"git commit: {field('git_commit')}",
        f"device: {devices}",
        f"torch: {torch_version}",
        f"python: {field('python')}",
        f"threads: {field('threads')}",
        f"calibration_s: {field('calibration_s')}",
        f"date: {date}",
    ] + _compiled_summary(runs, manifests)


def _compiled_summary(runs: pd.DataFrame, manifests: list[dict]) -> list[str]:
    """How many cells ran the compiled path, and what compiling cost the run(s) before the
    cells (off every cell's clock) and the cells themselves (inside their wall-clock)."""
    compiled = runs["compiled"] if "compiled" in runs else pd.Series(False, index=runs.index)
    if not compiled.any():
        return []
    warmups = {m.get("started_at"): m.get("compile_warmup_s") for m in manifests}
    warmup = sum(v for v in warmups.values() if isinstance(v, int | float))
    in_cells = pd.to_numeric(runs.loc[compiled, "resources.compile_s"], errors="coerce").sum()
    return [
        f"compiled path: {int(compiled.sum())} of {len(runs)} cells; compiling before the "
        f"cells {warmup:.1f} s, loading compiled code in the cells {in_cells:.1f} s in all"
    ]


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) if text is not None else "(no error message)"


def report_title(runs: pd.DataFrame) -> str:
    return f"hobench report: suite {_distinct(runs['suite'])}"


def report_blocks(
    runs: pd.DataFrame,
    tables: Sequence[Table],
    figures: Sequence[tuple[Path, str]],
    source: Path,
    rank_figures: Sequence[tuple[Path, str]] = (),
) -> list[Block]:
    """The report's content, in order, for both the Markdown and the HTML rendering: a summary
    (the best per task with its margin, the first critical-difference diagram, one anytime
    figure), the suite's own results, paper tables (when the suite asks for them), the legend
    of the tables' columns once, and the provenance (versions, commit, device) last."""
    n_ok = int((runs["status"] == "ok").sum())
    failed = runs[runs["status"] == "failed"]
    # What a kind of table's columns mean is said once, in the legend, not under every table.
    legends = list(dict.fromkeys(t.legend for t in tables if t.legend))
    tables = [dataclasses.replace(t, legend="") for t in tables]
    blocks: list[Block] = [
        Heading(report_title(runs), 1),
        Paragraph(
            f"{len(runs)} cells: {n_ok} ok, {len(failed)} failed. Regenerated from "
            f"{source.as_posix()} only (a report never trains); provenance at the end."
        ),
    ]
    # The answer first: who is best per task and how sure, the ranks across tasks, and how
    # the search went on one task; the details follow.
    summary = [t for t in tables if t.name == SUMMARY_NAME and t.rows]
    first_look = [*summary, *(FigureBlock(p, c) for p, c in rank_figures[:1])]
    anytime = [(p, c) for p, c in figures if p.name.startswith("anytime-")]
    first_look += [FigureBlock(p, c) for p, c in anytime[:1]]
    if first_look:
        blocks += [Heading("Summary"), *first_look]
    if len(failed):
        blocks.append(Heading("Failed cells"))
        pairs = zip(failed["cell"], failed["error"], strict=True)
        blocks.append(BulletList(tuple(f"{cell}: {_one_line(error)}" for cell, error in pairs)))
    ranks = [t for t in tables if t.name.startswith("ranks")]
    crossover = [t for t in tables if t.name.startswith("crossover")]
    crossover += [FigureBlock(p, c) for p, c in figures if p.name == CROSSOVER_FIGURE]
    figures = [(p, c) for p, c in figures if p.name != CROSSOVER_FIGURE]
    sections = (
        ("Results per task", [t for t in tables if t.name.startswith("task-")]),
        ("Crossover study", crossover),
        ("Ranks across tasks", [*ranks, *(FigureBlock(p, c) for p, c in rank_figures)]),
        ("Engine: time and extra memory", [t for t in tables if t.name == "engine"]),
        ("Cost model check", [t for t in tables if t.name == COST_MODEL_NAME]),
        ("Figures", [FigureBlock(path, caption) for path, caption in figures]),
        ("Paper tables", [t for t in tables if t.name.startswith("paper-")]),
    )
    for title, members in sections:
        if members:
            blocks += [Heading(title), *members]
    if legends:
        blocks += [Heading("Legend"), *(Paragraph(text) for text in legends)]
    blocks += [Heading("Provenance"), BulletList(tuple(manifest_summary(runs)))]
    return blocks


def render_markdown(blocks: Sequence[Block], out_dir: Path) -> str:
    """REPORT.md: figures referenced by paths relative to `out_dir`."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, BulletList):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, FigureBlock):
            relative = Path(os.path.relpath(block.path, out_dir)).as_posix()
            parts.append(f"![{block.caption}]({relative})\n\n{block.caption}")
        else:
            parts.append(to_markdown(block).rstrip("\n"))
    return "\n\n".join(parts) + "\n"


def _clear(directory: Path, patterns: Sequence[str]) -> Path:
    # Figure and table names follow task ids; files of a renamed task must not linger.
    directory.mkdir(parents=True, exist_ok=True)
    for pattern in patterns:
        for stale in directory.glob(pattern):
            stale.unlink()
    return directory


def write_tables(tables: Sequence[Table], directory: Path) -> list[Path]:
    """Each table as `<name>.md`, `<name>.tex` and a standalone `<name>.html`; a task table also
    as `<name>-narrow.tex`, one paper column wide (strategy, metric ± CI, vs best)."""
    _clear(directory, ("*.md", "*.tex", "*.html"))
    written = []
    for table in tables:
        slim = narrow(table)
        if slim is not None:
            path = directory / f"{slim.name}.tex"
            path.write_text(to_latex(slim), encoding="utf-8")
            written.append(path)
    for table in tables:
        for suffix, text in (
            (".md", to_markdown(table)),
            (".tex", to_latex(table)),
            (".html", render_page(table.title, [table])),
        ):
            path = directory / f"{table.name}{suffix}"
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def suite_paper_tables(results_dir: Path) -> tuple[str, ...]:
    """The paper tables the run's suite asks for (`paper_tables` in the `suite.toml` a run
    keeps beside its results); none when there is no such file."""
    path = results_dir / SUITE_FILE
    if not path.is_file():
        return ()
    try:
        value = tomllib.loads(path.read_text(encoding="utf-8")).get("paper_tables", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ReportError(f"{path}: unreadable suite copy ({exc}); delete it or rerun") from None
    return tuple(str(name) for name in value) if isinstance(value, list) else ()


def write_report(
    results_dir: str | Path, out_dir: str | Path | None = None, engine: str | Path | None = None
) -> Path:
    """Write tables, figures, REPORT.md and a self-contained index.html; return index.html's path.

    `results_dir` is a results directory holding `runs.jsonl` (or that file itself); the report
    goes to `results_dir/report/` unless `out_dir` is given. `engine`: an engine-benchmark
    summary (results/engine-bench.json) whose time and extra-memory figures the report shows.
    Raises `ReportError` on bad results.
    """
    source = runs_path(results_dir)
    records = read_records(source)
    if not records:  # a "0 cells" report would pass for a result
        raise ReportError(f"{source}: no cell records; run a suite into it first")
    runs, trajectories = runs_frame(records), trajectories_frame(records)
    out = Path(out_dir) if out_dir is not None else source.parent / REPORT_DIR
    tables = all_tables(runs, suite_paper_tables(source.parent))
    knobs = crossover_frame(runs, trajectories)
    tables += crossover_tables(knobs)
    if engine is not None:
        tables.append(engine_table(Path(engine)))
    write_tables(tables, out / "tables")
    figure_dir = _clear(out / "figures", ("*.png", "*.pdf"))
    figures = all_figures(runs, trajectories, figure_dir)
    colors = strategy_colors([str(s) for s in pd.unique(runs["strategy"])])
    path = plot_crossover(knobs, figure_dir / CROSSOVER_FIGURE, colors)
    if path is not None:
        figures.append((path, crossover_caption()))
    rank_figures = critical_difference_figures(rank_sets(runs), figure_dir)
    # A relative source keeps committed reports free of machine-specific absolute paths.
    relative = Path(os.path.relpath(source, out))
    blocks = report_blocks(runs, tables, figures, relative, rank_figures)
    (out / "REPORT.md").write_text(render_markdown(blocks, out), encoding="utf-8")
    index = out / "index.html"
    index.write_text(render_page(report_title(runs), blocks), encoding="utf-8")
    return index
