"""The default suite's gradient cells, eager against compiled, side by side (`make bench-engine`).

Each pair (task × Reverse-HG, Forward-HG, RTHO, RTHO-NT of suites/default.toml) runs as the
suite runs it: through the CLI, one worker process per cell, one thread, the cost budget. The
compiled side first warms its pairs (the runner compiles them once on this machine, off the
cells' clocks, as a user's first run does); then rounds alternate eager and compiled runs of the
same cells, so load that comes and goes falls on both sides, and a pair's ratio is its compiled
wall over its eager wall per round (compile load included: `wall_s` holds `compile_s`), the
median over rounds printed with its spread. Target: ≤ 0.6 for each pair — printed met or not.

Usage: python -m benchmarks.compiled_cells [--seeds N] [--rounds R] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from hobench.harness.measure import device_info

ROOT = Path(__file__).resolve().parents[1]
GRADIENT = ("reverse-hg", "forward-hg", "rtho", "rtho-nt")
TARGET = 0.6


def suite_text(seeds: int, compile: bool) -> str:
    """suites/default.toml with only its gradient strategies, `seeds` seeds and `compile`."""
    text = (ROOT / "suites" / "default.toml").read_text()
    data = tomllib.loads(text)
    keep = [s for s in data["strategies"] if s["kind"] in GRADIENT]
    exclude = [pair for pair in data.get("exclude", []) if pair.split("/")[1] in GRADIENT]
    head = [
        f'name = "default-{"compiled" if compile else "eager"}"',
        f"seeds = {list(range(seeds))}",
        'device = "cpu"',
        "threads = 1",
        f"compile = {'true' if compile else 'false'}",
        f"exclude = {json.dumps(exclude)}",
        f"[budget]\ncost = {data['budget']['cost']}",
    ]
    tables = []
    for task in data["tasks"]:
        tables.append("[[tasks]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in task.items()))
    for strategy in keep:
        tables.append("[[strategies]]\n" + f'kind = "{strategy["kind"]}"')
    return "\n".join(head + tables) + "\n"


def run(suite: Path, results: Path) -> dict[str, float]:
    """Mean wall_s per task/strategy pair of one run of `suite` into a fresh `results`."""
    done = subprocess.run(
        [sys.executable, "-m", "hobench", "run", str(suite), "--jobs", "1", "--quiet"]
        + ["--results-dir", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"compiled_cells: {suite.name} failed:\n{done.stderr[-2000:]}")
    walls: dict[str, list[float]] = {}
    for line in (results / "runs.jsonl").read_text().splitlines():
        record = json.loads(line)
        walls.setdefault(f"{record['task']}/{record['strategy']}", []).append(
            record["resources"]["wall_s"]
        )
    return {pair: statistics.fmean(values) for pair, values in walls.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="results/local/compiled-cells.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hobench-compiled-cells-") as scratch:
        folder = Path(scratch)
        suites = {}
        for compiled in (False, True):
            suites[compiled] = folder / f"{'compiled' if compiled else 'eager'}.toml"
            suites[compiled].write_text(suite_text(args.seeds, compiled))
        run(suites[True], folder / "warm")  # compiles what this machine lacks, off the clocks
        rounds: list[dict[str, dict[str, float]]] = []
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            walls = {c: run(suites[c], folder / f"round{r}-{int(c)}") for c in order}
            rounds.append({"eager": walls[False], "compiled": walls[True]})
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    pairs = sorted(rounds[0]["eager"])
    rows = []
    print(f"{'pair':28} {'eager s':>8} {'compiled s':>10} {'ratio':>6} {'spread':>11}  target")
    for pair in pairs:
        ratios = [r["compiled"][pair] / r["eager"][pair] for r in rounds]
        eager = statistics.median(r["eager"][pair] for r in rounds)
        compiled = statistics.median(r["compiled"][pair] for r in rounds)
        ratio = statistics.median(ratios)
        met = "met" if ratio <= TARGET else "NOT met"
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(
            f"{pair:28} {eager:8.2f} {compiled:10.2f} {ratio:6.2f} {spread:>11}  ≤ {TARGET} {met}"
        )
        rows.append(
            {"pair": pair, "eager_s": eager, "compiled_s": compiled, "ratio": ratio,
             "ratios": ratios, "target": TARGET, "met": ratio <= TARGET}
        )  # fmt: skip
    total = [sum(r["compiled"].values()) / sum(r["eager"].values()) for r in rounds]
    print(f"all pairs: compiled/eager wall {statistics.median(total):.2f} (rounds {total})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": device_info("cpu")["device_name"],
                "seeds": args.seeds,
                "rounds": args.rounds,
                "pairs": rows,
                "total_ratio": statistics.median(total),
            },
            indent=1,
        )  # fmt: skip
        + "\n"
    )
    print(f"written: {out}")


if __name__ == "__main__":
    main()
