"""README's generated figures (tools/readme_figures.py) are the committed results' own."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "tools/readme_figures.py")
figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)


def committed_bodies() -> dict[str, str]:
    return figures.generated(figures.REPORT.read_text(), json.loads(figures.ENGINE.read_text()))


def test_the_readme_figures_are_those_of_the_committed_results():
    """A README whose tables or engine figures differ from results/default's report or from
    results/engine-bench.json fails here: rerun `make readme` after regenerating results."""
    readme = figures.README.read_text()
    _, stale = figures.regenerate(readme, committed_bodies())
    assert stale == []


def test_a_changed_figure_is_found_and_rewritten():
    readme = figures.README.read_text()
    bodies = committed_bodies()
    row = bodies["task-ridge"].splitlines()[2]  # the first strategy's row
    tampered = readme.replace(row, row.replace("|", "| 9", 1), 1)
    assert tampered != readme
    fixed, stale = figures.regenerate(tampered, bodies)
    assert stale == ["task-ridge"] and fixed == readme


def test_the_task_tables_keep_the_reports_rows_and_the_readmes_columns():
    report = figures.REPORT.read_text()
    full = figures.markdown_table(report, "**Task hc-R250**")
    shown = figures.markdown_table("**x**\n\n" + figures.task_table(report, "hc-R250"), "**x**")
    assert shown[0] == ["strategy", "test accuracy (%)", *figures.TASK_COLUMNS]
    assert [row[0] for row in shown] == [row[0] for row in full]
    accuracy = full[0].index("test accuracy (%)")
    assert [row[1] for row in shown[1:]] == [row[accuracy] for row in full[1:]]


def test_the_engine_section_says_how_each_figure_was_taken():
    """A target without interleaved rounds (the slower plain loop was the interleaved one) is
    marked as separately timed medians; a case timed once says so."""
    summary = json.loads(figures.ENGINE.read_text())
    forward = next(t for t in summary["targets"] if t["target"] == "Forward-HG m = 1 / plain")
    forward["detail"] = "medians 0.151 s / 0.108 s; eager (medians): 5.40"
    higher = next(c for c in summary["cases"] if c["case"] == "higher")
    higher["rounds"] = 1
    section = figures.engine_section(summary)
    assert f"| Forward-HG m = 1 / plain | {forward['value']:.2f} (separately timed medians) |" in (
        section
    )
    assert "| higher `innerloop_ctx`, unrolled (peer, 1 round) |" in section
