"""The generated figures of README.md and the docs pages (tools/readme_figures.py) are the
committed results' and the registries' own."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "tools/readme_figures.py")
figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)


@pytest.fixture(scope="module")
def bodies() -> dict[str, str]:
    return figures.generated(figures.REPORT.read_text(), json.loads(figures.ENGINE.read_text()))


@pytest.mark.parametrize("path", list(figures.PAGES), ids=lambda p: p.name)
def test_the_figures_are_those_of_the_committed_results(bodies, path):
    """A README or docs page whose tables or figures differ from results/default's report, from
    results/engine-bench.json or from the registries fails here: run `make readme`."""
    _, stale = figures.regenerate(path.read_text(), bodies, path)
    assert stale == []


def test_every_region_has_one_home(bodies):
    homes = [name for names in figures.PAGES.values() for name in names]
    assert sorted(homes) == sorted(bodies)


def test_a_changed_figure_is_found_and_rewritten(bodies):
    path = figures.DOCS / "results.md"
    page = path.read_text()
    row = bodies["task-ridge"].splitlines()[2]  # the first strategy's row
    tampered = page.replace(row, row.replace("|", "| 9", 1), 1)
    assert tampered != page
    fixed, stale = figures.regenerate(tampered, bodies, path)
    assert stale == ["task-ridge"] and fixed == page


def test_a_region_in_the_wrong_file_is_refused(bodies):
    readme = figures.README.read_text() + "\n<!-- figures:engine -->\n<!-- /figures -->\n"
    with pytest.raises(SystemExit, match="no generator"):
        figures.regenerate(readme, bodies, figures.README)


def test_the_readme_keeps_its_two_commands_on_top_and_its_length():
    lines = figures.README.read_text().splitlines()
    assert len(lines) <= 200
    top = "\n".join(lines[:40])
    assert "make bench" in top and "make test" in top


def test_the_readme_links_only_to_files_that_exist():
    readme = figures.README.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)\)", readme)
    assert targets
    for target in targets:
        assert (ROOT / target).exists(), target


def test_the_headline_figure_is_the_reports_first_critical_difference_diagram():
    report = figures.REPORT.read_text()
    body = figures.headline(report)
    image = re.search(r"\]\(([^)]+)\)", body).group(1)
    assert image.startswith(figures.FIGURES) and (ROOT / image).is_file()
    assert "of 5 strategies over 40 task-seed blocks" in body


def test_the_ranks_table_carries_each_tasks_test_against_its_best():
    report = figures.REPORT.read_text()
    table = figures.ranks(report)
    rows = figures.markdown_table("**x**\n\n" + table, "**x**")
    assert rows[0][:2] == ["strategy", "mean rank"]
    assert [row[0] for row in rows[1:]][0] == "`reverse-hg`"
    # reverse-hg is the best on both hyper-cleaning tasks; default is worse on ridge
    assert rows[1][3] == "1.00 (best)"
    default = next(row for row in rows if row[0] == "`default`")
    assert default[2].startswith("4.70 (worse, p = 0.016")
    words = " ".join(table.split())
    assert "Friedman χ² = 52.05, p = 1.3e-10 over 40 task-seed blocks" in words
    # the reading agrees with tests/test_readme_claims.py's Nemenyi check on the same results
    assert "`reverse-hg` ranks first, apart from every other strategy" in words


def test_the_registry_tables_list_every_built_in_and_no_plugin():
    from hobench.registry import STRATEGIES, TASKS

    for kind, registry in (("strategies", STRATEGIES), ("tasks", TASKS)):
        names = re.findall(r"^\| `([^`]+)` \|", figures.registry_table(kind), re.M)
        shipped = [n for n in registry.names() if registry.get(n).__module__.startswith("hobench.")]
        assert sorted(names) == sorted(shipped)


def test_the_reference_pages_show_every_parameter_with_its_domain():
    from hobench.registry import STRATEGIES

    page = figures.registry_reference("strategies")
    for name in STRATEGIES.names():
        assert f"### `{name}`" in page
    assert "| `n_startup_trials` | `5` | an integer >= 0 |" in page  # tpe, bohb, gp


def test_the_task_tables_keep_the_reports_rows_and_the_pages_columns():
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
