"""Regenerate the README's measured tables and the engine section from the committed results.

Each generated part of README.md sits between `<!-- figures:NAME -->` and `<!-- /figures -->`:

- `task-TASK` (ridge, hc-R250, hc-R625, auxtarget): the columns of the default suite's task
  table that the README shows, copied from results/default/report/REPORT.md;
- `cost-model`: the report's cost-model check (FLOPs against seconds per unit);
- `engine`: the engine benchmarks' figures, tables and targets from results/engine-bench.json.

`python tools/readme_figures.py` (`make readme`) rewrites them after `hobench report` or
`make bench-engine`; `--check` only says which are stale (exit 1). tests/test_readme_figures.py
runs the check, so a README whose figures differ from the committed results does not pass.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REPORT = ROOT / "results" / "default" / "report" / "REPORT.md"
ENGINE = ROOT / "results" / "engine-bench.json"

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


def task_table(report: str, task: str) -> str:
    rows = markdown_table(report, f"**Task {task}**")
    wanted = ["strategy", TASKS[task], *TASK_COLUMNS]
    index = [rows[0].index(name) for name in wanted]
    return render([[row[i] for i in index] for row in rows])


def cost_table(report: str) -> str:
    return render(markdown_table(report, "**Cost model check: FLOPs against seconds per unit**"))


def _measured(target: dict) -> str:
    """The value, and how it was taken: the range over interleaved rounds, or the separately
    timed medians (where the slower plain loop is the interleaved one, or a case was skipped)."""
    found = re.search(r"range ([0-9.]+)–([0-9.]+)", target["detail"])
    how = f"rounds {found.group(1)}–{found.group(2)}" if found else "separately timed medians"
    return f"{target['value']:.2f} ({how})"


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
    separately = median["reverse"] / median["torchopt"]
    target_rows = [
        "| target | measured | limit | |",
        "|---|---:|---:|---|",
        f"| Reverse-HG time / torchopt's | {_measured(reverse_t)} | ≤ 1.0 | {met(reverse_t)}; "
        "the separately timed "
        f"medians give {separately:.2f} ({median['reverse']:.2f} s / {median['torchopt']:.2f} s); "
        f"eager {_eager(reverse_t['detail'])} |",
        f"| Reverse-HG extra memory / torchopt's | {memory_t['value']:.2f} | ≤ 0.25 | "
        f"{met(memory_t)}: {memory_t['detail'].split(', over')[0]} |",
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


def generated(report: str, summary: dict) -> dict[str, str]:
    """Every region's body, by name."""
    bodies = {f"task-{task}": task_table(report, task) for task in TASKS}
    bodies["cost-model"] = cost_table(report)
    bodies["engine"] = wrap(engine_section(summary))
    return bodies


def regenerate(readme: str, bodies: dict[str, str]) -> tuple[str, list[str]]:
    """README with every region's body replaced; the names of the regions that changed."""
    missing = set(bodies) - {m.group("name") for m in REGION.finditer(readme)}
    if missing:
        raise SystemExit(f"README.md has no region {sorted(missing)}: add its markers")
    stale = []

    def replace(match: re.Match) -> str:
        body = bodies[match.group("name")]
        if body != match.group("body"):
            stale.append(match.group("name"))
        return match.group(1) + body + match.group(4)

    return REGION.sub(replace, readme), stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale regions")
    args = parser.parse_args(argv)
    bodies = generated(REPORT.read_text(), json.loads(ENGINE.read_text()))
    readme = README.read_text()
    new, stale = regenerate(readme, bodies)
    if args.check:
        if stale:
            print(f"README.md is stale in {', '.join(stale)}: run `make readme`", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    print(f"README.md: {len(stale)} region(s) rewritten: {', '.join(stale) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
