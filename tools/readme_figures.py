"""Regenerate the README's and the docs' generated parts from the committed results and registries.

Each generated part sits between `<!-- figures:NAME -->` and `<!-- /figures -->` in one file:

- README.md
  - `headline`: the default suite's critical-difference diagram (results/default/report/figures)
    with the report's caption;
  - `ranks`: the default suite's mean ranks over the tasks every strategy ran on, each task's
    column with the report's test against the task's best, and Friedman's test and the critical
    difference from the report;
  - `strategies`, `tasks`: the registered built-in strategies and tasks (hobench.registry):
    name, family, and the first sentence (strategies) or paragraph (tasks) of the docstring;
- docs/results.md
  - `task-TASK` (ridge, hc-R250, hc-R625, auxtarget): the columns of the default suite's task
    table shown there, copied from results/default/report/REPORT.md;
  - `cost-model`: the report's cost-model check (FLOPs against seconds per unit);
- docs/engine.md
  - `engine`: the engine benchmarks' figures, tables and targets from results/engine-bench.json.
- docs/models.md
  - `cnn-task-TASK` (cnn-wd, cnn-clean): the same columns of the CNN suite's task tables, from
    results/cnn/report/REPORT.md.

`python tools/readme_figures.py` (`make readme`) rewrites them after `hobench report`,
`make bench-engine` or a new registered strategy or task; `--check` only says which are stale
(exit 1). tests/test_readme_figures.py runs the check, so a README or docs page whose figures
differ from the committed results does not pass.

The docs site's strategy and task reference pages are not committed: tools/docs_hooks.py renders
them at build time with `registry_reference` below, so they cannot drift either.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REPORT = ROOT / "results" / "default" / "report" / "REPORT.md"
ENGINE = ROOT / "results" / "engine-bench.json"
COMPILED_CELLS = ROOT / "results" / "compiled-cells.json"  # benchmarks/compiled_cells.py
DOCS = ROOT / "docs"
FIGURES = "results/default/report/figures"

# Which file holds which regions.
PAGES = {
    README: ["headline", "ranks", "strategies", "tasks"],
    DOCS / "results.md": ["task-ridge", "task-hc-R250", "task-hc-R625", "task-auxtarget"]
    + ["cost-model"],
    DOCS / "engine.md": ["engine"],
    DOCS / "models.md": ["cnn-task-cnn-wd", "cnn-task-cnn-clean"],
    DOCS / "suites.md": ["compiled-cells"],
}
# The CNN suite's report (suites/cnn.toml), whose task tables docs/models.md shows.
CNN_REPORT = ROOT / "results" / "cnn" / "report" / "REPORT.md"
CNN_TASKS = {"cnn-wd": "test accuracy (%)", "cnn-clean": "test accuracy (%)"}

REGION = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)

# The default suite's tasks and the metric column the README shows for each.
TASKS = {
    "ridge": "regret",
    "hc-R250": "test accuracy (%)",
    "hc-R625": "test accuracy (%)",
    "auxtarget": "test accuracy (%)",
}
TASK_COLUMNS = ["vs best (Holm p)", "wall-clock (s)", "cost (plain runs)", "added memory (MB)"]

# Engine cases in the README's order, with the words it uses for them.
ENGINE_CASES = {
    "plain-analytic": "plain training (analytic gradient)",
    "plain-autograd": "plain training (autograd)",
    "reverse": "**Reverse-HG**, ∂E/∂λ for 5000 weights",
    "reverse-eager": "Reverse-HG, eager",
    "forward-m1": "Forward-HG, m = 1 (η)",
    "forward-m1-eager": "Forward-HG, m = 1, eager",
    "forward-m3": "Forward-HG, m = 3 (η, μ, weight decay)",
    "forward-m10": "Forward-HG, m = 10 (η, μ, 8 weight decays)",
    "rtho-m3": "RTHO, m = 3: T steps of s and Z, a hypergradient every 10",
    "rtho-m3-eager": "RTHO, m = 3, eager",
    "torchopt": "torchopt `MetaSGD`, unrolled (peer)",
    "higher": "higher `innerloop_ctx`, unrolled (peer)",
}


def markdown_table(text: str, heading: str) -> list[list[str]]:
    """The first markdown table after the line `heading`, as rows of cells (header first,
    the alignment row dropped)."""
    lines = text[text.index(heading + "\n") :].splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return [rows[0], *rows[2:]]


def render(rows: list[list[str]]) -> str:
    """Rows (header first) as a markdown table, the first column left-aligned."""
    align = "|:---|" + "|".join("---:" for _ in rows[0][1:]) + "|"
    lines = ["| " + " | ".join(rows[0]) + " |", align]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]]) + "\n"


def task_table(report: str, task: str, metric: str | None = None) -> str:
    rows = markdown_table(report, f"**Task {task}**")
    wanted = ["strategy", metric or TASKS[task], *TASK_COLUMNS]
    index = [rows[0].index(name) for name in wanted]
    return render([[row[i] for i in index] for row in rows])


def cost_table(report: str) -> str:
    return render(markdown_table(report, "**Cost model check: FLOPs against seconds per unit**"))


def headline(report: str) -> str:
    """The report's first critical-difference diagram (the ranks over the tasks every strategy
    ran on), linked from the repository root, its caption under it."""
    found = re.search(
        r"^!\[(?P<caption>Critical-difference diagram[^\]]*)\]\(figures/(?P<file>[^)]+)\)",
        report,
        re.M,
    )
    caption, name = found.group("caption"), found.group("file")
    return f"![The default suite's critical-difference diagram]({FIGURES}/{name})\n\n*{caption}*\n"


def ranks(report: str) -> str:
    """The first mean-rank table with each task's test against its best beside each rank."""
    heading = re.search(r"^\*\*Mean rank: [^*]+\*\*$", report, re.M).group(0)
    rows = markdown_table(report, heading)
    tasks = rows[0][2:]
    versus = {}
    for task in tasks:
        table = markdown_table(report, f"**Task {task}**")
        column = table[0].index("vs best (Holm p)")
        versus[task] = {row[0]: row[column] for row in table[1:]}

    def cell(rank: str, test: str) -> str:
        if test == "best":
            return f"{rank} (best)"
        p, verdict = test.split(" ", 1)
        return f"{rank} ({verdict}, {p.replace('p=', 'p = ')})"

    header = ["strategy", "mean rank", *(f"{task}: rank (vs best)" for task in tasks)]
    body = [
        [
            f"`{row[0]}`",
            row[1],
            *(cell(r, versus[t][row[0]]) for t, r in zip(tasks, row[2:], strict=True)),
        ]
        for row in rows[1:]
    ]
    after = report[report.index(heading) :]
    friedman = re.search(r"Friedman χ² = ([0-9.]+), p = ([0-9.e+-]+) over (\d+) blocks", after)
    cd = re.search(r"CD = ([0-9.]+) ranks", after).group(1)
    seeds = int(friedman.group(3)) // len(tasks)
    (first, rank1), (second, rank2) = [(row[0], float(row[1])) for row in rows[1:3]]
    if rank2 - rank1 > float(cd):
        reading = (
            f"`{first}` ranks first, apart from every other strategy by more than the critical "
            "difference"
        )
    else:
        reading = (
            f"`{first}` ranks first, not separated from `{second}` (within the critical difference)"
        )
    legend = (
        f"{reading}. "
        f"{heading.strip('*')}: the strategies that ran on every task of the suite, {seeds} "
        "paired seeds each. Rank 1 is the best of a task-seed block (by regret on ridge, else by "
        "test accuracy); a task's column is its mean rank over the seeds, and in brackets the "
        "report's test against the task's best strategy by mean (two-sided Wilcoxon signed-rank "
        "over seeds, Holm-corrected over the task's strategies; `worse` at p < 0.05, `n.s.` not "
        f"separated). Across tasks: Friedman χ² = {friedman.group(1)}, p = {friedman.group(2)} "
        f"over {friedman.group(3)} task-seed blocks; mean ranks further apart than the critical "
        f"difference {cd} (Nemenyi, α = 0.05) differ significantly."
    )
    return render([header, *body]) + "\n" + wrap(legend)


def _paragraph(cls: type) -> str:
    """The first paragraph of a class's own docstring, on one line."""
    text = inspect.cleandoc(cls.__dict__.get("__doc__") or "").split("\n\n")[0]
    return " ".join(text.split())


def _sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z(`])", text, maxsplit=1)[0]


# A family per module, unless the class names its own (`family = "..."`).
FAMILIES = {
    "hobench.strategies.reference": "reference",
    "hobench.strategies.blackbox": "black-box (Optuna)",
    "hobench.strategies.gradient": "hypergradient",
    "hobench.strategies.implicit": "implicit hypergradient",
    "hobench.strategies.online": "online hypergradient",
    "hobench.strategies.multifidelity": "multi-fidelity (Optuna pruners)",
    "hobench.tasks.ridge": "ground truth (closed-form optimum)",
    "hobench.tasks.hypercleaning": "paper experiment",
    "hobench.tasks.auxtarget": "paper experiment",
    "hobench.tasks.featuredecay": "crossover knob (m)",
    "hobench.tasks.lrschedule": "crossover knob (T)",
    "hobench.tasks.tabulardecay": "tabular",
    "hobench.tasks.module": "your model (nn.Module)",
}


def family(cls: type) -> str:
    own = getattr(cls, "family", None)
    if isinstance(own, str) and own:
        return own
    return FAMILIES.get(cls.__module__, cls.__module__.rsplit(".", 1)[-1])


def _by_family(named: list[tuple[str, type]]) -> list[tuple[str, type]]:
    """Grouped by family in the order of FAMILIES (families it does not name last), then by
    name."""
    order = list(dict.fromkeys(FAMILIES.values()))

    def key(item):
        found = family(item[1])
        return (order.index(found) if found in order else len(order), found, item[0])

    return sorted(named, key=key)


def builtins(registry) -> list[tuple[str, type]]:
    """The registered classes that ship with hobench (a plugin installed here is left out, so
    the committed tables do not depend on what one machine has installed), by family."""
    named = [(name, registry.get(name)) for name in registry.names()]
    return _by_family([(n, c) for n, c in named if c.__module__.startswith("hobench.")])


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def registry_table(kind: str) -> str:
    """The README's table of built-in strategies or tasks."""
    from hobench.registry import STRATEGIES, TASKS

    if kind == "strategies":
        header = ["strategy", "family", "what it does"]
        rows = [
            [f"`{n}`", family(c), _cell(_sentence(_paragraph(c)))] for n, c in builtins(STRATEGIES)
        ]
    else:
        header = ["task", "family", "what it is and what it tunes"]
        rows = [[f"`{n}`", family(c), _cell(_paragraph(c))] for n, c in builtins(TASKS)]
    lines = ["| " + " | ".join(header) + " |", "|:---|:---|:---|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def _default(value) -> str:
    return "(required)" if value is inspect.Parameter.empty else f"`{value!r}`"


def registry_reference(kind: str) -> str:
    """The docs' reference page body for every registered strategy or task: its family, its
    whole docstring and its suite parameters with their defaults and domains."""
    from hobench.harness.suite import HARNESS_TASK_KEYS, load_registries
    from hobench.registry import STRATEGIES, TASKS

    load_registries()
    registry = STRATEGIES if kind == "strategies" else TASKS
    out = []
    for name, cls in _by_family([(name, registry.get(name)) for name in registry.names()]):
        where = cls.__module__
        plugin = "" if where.startswith("hobench.") else " (plugin)"
        out.append(f"### `{name}`\n")
        out.append(f"*{family(cls)}*{plugin} · `{where}.{cls.__qualname__}`\n")
        doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "(no description)")
        out.append(doc + "\n")
        params = {k: v for k, v in registry.parameters(name).items() if k not in HARNESS_TASK_KEYS}
        domains = getattr(cls, "domains", {}) or {}
        if params:
            out.append("| parameter | default | domain |\n|:---|:---|:---|")
            for key, value in params.items():
                domain = domains.get(key)
                text = _cell(domain.describe()) if domain is not None else "–"
                out.append(f"| `{key}` | {_cell(_default(value))} | {text} |")
            out.append("")
        else:
            out.append("No suite parameters.\n")
    return "\n".join(out) + "\n"


def _measured(target: dict) -> str:
    """The value, and how it was taken: the range over interleaved rounds, or the separately
    timed medians (where the slower plain loop is the interleaved one, or a case was skipped)."""
    found = re.search(r"range ([0-9.]+)–([0-9.]+)", target["detail"])
    how = f"rounds {found.group(1)}–{found.group(2)}" if found else "separately timed medians"
    return f"{target['value']:.2f} ({how})"


def _parity(target: dict) -> str:
    """ "; parity" where the rounds' range spans 1: neither side is faster on this machine."""
    found = re.search(r"range ([0-9.]+)–([0-9.]+)", target["detail"])
    return "; parity" if found and float(found.group(1)) <= 1.0 <= float(found.group(2)) else ""


def _eager(detail: str) -> str:
    return re.search(r"eager \(medians\): ([0-9.]+)", detail).group(1)


def _one_round(case: dict) -> str:
    """The suffix " (1 round)" for a case timed once (older summaries keep no rounds: min = max)."""
    rounds = case.get("rounds")
    once = rounds == 1 if rounds is not None else case["min_s"] == case["max_s"]
    return " (1 round)" if once else ""


def _label(words: str, case: dict) -> str:
    """The case's words, with "1 round" inside their closing parenthesis if they have one."""
    suffix = _one_round(case)
    if suffix and words.endswith(")"):
        return f"{words[:-1]}, 1 round)"
    return words + suffix


def engine_section(summary: dict) -> str:
    meta, agreement = summary["meta"], summary["agreement"]
    cases = {row["case"]: row for row in summary["cases"]}
    targets = {row["target"]: row for row in summary["targets"]}
    median = {case: row["median_s"] for case, row in cases.items()}
    plain = median[summary["plain"]]
    steps = meta["steps"]

    def met(target: dict) -> str:
        return "met" if target["status"] == "PASS" else "**not met**"

    table = ["| case | median s | × plain | extra peak MB |", "|---|---:|---:|---:|"]
    table += [
        f"| {_label(words, cases[case])} | {median[case]:.2f} | "
        f"{cases[case]['ratio_to_plain']:.2f} | {cases[case]['extra_peak_mb']:.1f} |"
        for case, words in ENGINE_CASES.items()
    ]
    reverse_t, memory_t, forward_t, rtho_t, slope_t, growth_t = (
        targets[name]
        for name in (
            "Reverse-HG time / torchopt",
            "Reverse-HG extra memory / torchopt",
            "Forward-HG m = 1 / plain",
            "RTHO per step, m = 3 / plain",
            "Forward-HG slope per m / plain",
            "Forward-HG memory growth T/5 → T, MB",
        )
    )
    growth = summary["forward_memory"]
    unpinned = targets.get("Reverse-HG extra memory / torchopt, no malloc pin")
    target_rows = [
        "| target | measured | limit | |",
        "|---|---:|---:|---|",
        f"| Reverse-HG time / torchopt's | {_measured(reverse_t)} | ≤ 1.0 | {met(reverse_t)}"
        f"{_parity(reverse_t)}; eager {_eager(reverse_t['detail'])} |",
        f"| Reverse-HG extra memory / torchopt's, malloc's mmap threshold pinned | "
        f"{memory_t['value']:.2f} | ≤ 0.25 | "
        f"{met(memory_t)}: {memory_t['detail'].split(', over')[0]} |",
    ]
    if unpinned is not None:
        target_rows.append(
            f"| the same, threshold not pinned (as users run) | {unpinned['value']:.2f} | ≤ 0.25 | "
            f"{met(unpinned)}: {unpinned['detail'].split(', over')[0]} |"
        )
    else:
        target_rows.append(
            "| the same, threshold not pinned (as users run) | not measured in this run | ≤ 0.25 | "
            "rerun `make bench-engine` |"
        )
    target_rows += [
        f"| Forward-HG m = 1 / plain | {_measured(forward_t)} | ≤ 2.5 | {met(forward_t)}; eager "
        f"{_eager(forward_t['detail'])} |",
        f"| RTHO per step, m = 3 / plain per step | {_measured(rtho_t)} | ≤ 2 | {met(rtho_t)}; "
        "eager "
        f"{_eager(rtho_t['detail'])} |",
        f"| Forward-HG slope per extra m / plain run | {slope_t['value']:.2f} | ≤ 1.5 | "
        f"{met(slope_t)}: (({median['forward-m10']:.2f} − {median['forward-m1']:.2f}) s / 9) / "
        f"{plain:.2f} s |",
        f"| Forward-HG memory, T = {growth['short_steps']} → {growth['long_steps']} | "
        f"{growth_t['value']:+.2f} MB | ≤ {growth_t['limit']:.1f} MB | {met(growth_t)} (storing "
        f"the {growth['long_steps'] - growth['short_steps']} extra states would take "
        f"{growth['trajectory_mb']:.0f} MB) |",
    ]
    compiles = {e["function"]: e["seconds"] for e in summary["compile_s"].get("reverse", [])}
    compile_s = sum(compiles.values())
    saving = median["reverse-eager"] - median["reverse"]
    spread = max(row["max_s"] / row["min_s"] for row in summary["cases"] if row["min_s"])
    forward_agree = max(
        agreement[f"forward vs reverse (momentum, m={m}, T={min(steps, 100)})"]["rel_diff"]
        for m in (1, 10)
    )
    start, end = meta["loadavg_start"][0], meta["loadavg_end"][0]
    context = (
        f"Measured with `make bench-engine` ({meta['torch_threads']} torch threads, T = {steps}) "
        f"on a {meta['cpu_count']}-core {meta['processor']}, torch {meta['versions']['torch']} "
        f"(load average {start:.1f} when it started, {end:.1f} at its end, its own threads "
        f"included; `results/engine-bench.json`, commit {meta['git_commit']}, "
        f"{meta['date'][:10]}). The rounds of one case differed by up to {spread:.2f}×: this "
        "virtual machine's speed drifts, so read the ratios of cases timed side by side, not "
        "the seconds."
    )
    checks = (
        "Before anything is timed: the three reverse hypergradients (ours, torchopt's, "
        "higher's) agree to "
        f"{agreement[f'torchopt vs reverse (λ, T={steps})']['rel_diff']:.1e}; against the same "
        "hypergradient in float64 ours is off by "
        f"{agreement[f'reverse vs float64 reference (λ, T={steps})']['rel_diff']:.1e} relative, "
        "torchopt's by "
        f"{agreement[f'torchopt vs float64 reference (λ, T={steps})']['rel_diff']:.1e}. Forward "
        f"and reverse agree to {forward_agree:.1e} (momentum, m = 1 and 10, "
        f"T = {min(steps, 100)})."
    )
    compile_note = (
        "Compile time is not in any of these: each compiled function compiles in its first "
        f"call, timed apart. In this run the first Reverse-HG call took {compile_s:.1f} s (step "
        f"{compiles.get('step', 0):.1f}, pullback {compiles.get('pullback', 0):.1f}), with "
        "inductor's on-disk cache as the machine had it. At T = "
        f"{steps} the compiled Reverse-HG saves {saving:.1f} s a call over eager here, so its "
        f"compile is paid back after about {max(1, round(compile_s / saving))} hypergradients."
    )
    parts = [context, "\n".join(table), checks, "\n".join(target_rows), compile_note]
    return "\n\n".join(parts) + "\n"


def wrap(text: str, width: int = 100) -> str:
    """Paragraphs re-wrapped to `width`; tables and blank lines kept as they are."""
    out, words = [], []

    def flush():
        line = ""
        for word in words:
            if line and len(line) + 1 + len(word) > width:
                out.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        if line:
            out.append(line)
        words.clear()

    for line in text.splitlines():
        if not line or line.startswith("|"):
            flush()
            out.append(line)
        else:
            words.extend(line.split())
    flush()
    return "\n".join(out) + "\n"


def generated(report: str, summary: dict, cnn_report: str | None = None) -> dict[str, str]:
    """Every region's body, by name (the CNN suite's from `cnn_report`, default its file)."""
    bodies = {f"task-{task}": task_table(report, task) for task in TASKS}
    cnn_report = CNN_REPORT.read_text() if cnn_report is None else cnn_report
    for task, metric in CNN_TASKS.items():
        bodies[f"cnn-task-{task}"] = task_table(cnn_report, task, metric)
    bodies["cost-model"] = cost_table(report)
    bodies["engine"] = wrap(engine_section(summary))
    bodies["headline"] = headline(report)
    bodies["ranks"] = ranks(report)
    bodies["strategies"] = registry_table("strategies")
    bodies["tasks"] = registry_table("tasks")
    bodies["compiled-cells"] = compiled_cells_table(json.loads(COMPILED_CELLS.read_text()))
    return bodies


def compiled_cells_table(summary: dict) -> str:
    """benchmarks/compiled_cells.py's side-by-side table: each pair's compiled wall over its
    eager wall (median over alternating rounds, the range beside it) against its target."""
    target = summary["pairs"][0]["target"]  # the benchmark's one target, kept per pair
    rows = [
        f"| task/strategy | eager (s) | compiled (s) | compiled / eager | rounds | ≤ {target} |",
        "|:---|---:|---:|---:|---:|:---|",
    ]
    for pair in summary["pairs"]:
        ratios = pair["ratios"]
        rows.append(
            f"| {pair['pair']} | {pair['eager_s']:.2f} | {pair['compiled_s']:.2f} | "
            f"{pair['ratio']:.2f} | {min(ratios):.2f}–{max(ratios):.2f} | "
            f"{'met' if pair['met'] else '**not met**'} |"
        )
    met = sum(pair["met"] for pair in summary["pairs"])
    return (
        "\n".join(rows)
        + f"\n\n{met} of {len(summary['pairs'])} pairs meet the target; all pairs together: "
        f"{summary['total_ratio']:.2f}× the eager wall ({summary['seeds']} seed(s), "
        f"{summary['rounds']} rounds, on {summary['machine']}).\n"
    )


def regenerate(text: str, bodies: dict[str, str], path: Path = README) -> tuple[str, list[str]]:
    """`text` (the file at `path`) with every region of that file replaced; the names of the
    regions that changed."""
    wanted = set(PAGES[path])
    found = {m.group("name") for m in REGION.finditer(text)}
    if wanted - found:
        raise SystemExit(f"{path.name} has no region {sorted(wanted - found)}: add its markers")
    if found - wanted:
        raise SystemExit(f"{path.name}: no generator for region {sorted(found - wanted)}")
    stale = []

    def replace(match: re.Match) -> str:
        body = bodies[match.group("name")]
        if body != match.group("body"):
            stale.append(match.group("name"))
        return match.group(1) + body + match.group(4)

    return REGION.sub(replace, text), stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale regions")
    args = parser.parse_args(argv)
    bodies = generated(REPORT.read_text(), json.loads(ENGINE.read_text()))
    failed = 0
    for path in PAGES:
        new, stale = regenerate(path.read_text(), bodies, path)
        name = path.relative_to(ROOT)
        if args.check:
            if stale:
                print(f"{name} is stale in {', '.join(stale)}: run `make readme`", file=sys.stderr)
                failed = 1
            continue
        path.write_text(new)
        print(f"{name}: {len(stale)} region(s) rewritten: {', '.join(stale) or 'none'}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
