"""`make bench`'s clock: how long the whole target took, against its targets, kept per run.

Usage: python tools/bench_clock.py start RESULTS_DIR   (before anything, install included)
       python tools/bench_clock.py stop RESULTS_DIR    (after the report; prints the figures)

Targets (issue 23): ≤ 600 s in a fresh clone on 2 cores; a later run that reruns every cell
(a fresh results folder) on a warm compile cache ≤ 0.8 × the first such run on this machine.
The history is results/local/bench-clock.jsonl: one line per run, with the load beside it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

TARGET_S = 600.0
WARM_RATIO = 0.8
HISTORY = Path("results/local/bench-clock.jsonl")


def cells(results: Path) -> int:
    runs = results / "runs.jsonl"
    return len(runs.read_text().splitlines()) if runs.is_file() else 0


def main(action: str, results: Path) -> None:
    mark = results.parent / f".{results.name}.bench-start"
    if action == "start":
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(json.dumps({"t": time.time(), "cells": cells(results)}))
        return
    start = json.loads(mark.read_text())
    seconds, ran = time.time() - start["t"], cells(results) - start["cells"]
    entry = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": round(seconds, 1),
        "cells_run": ran,
        "load_at_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    full = [e for e in _history() if e["cells_run"] >= ran > 0]
    HISTORY.parent.mkdir(parents=True, exist_ok=True)
    with HISTORY.open("a") as history:
        history.write(json.dumps(entry) + "\n")
    met = "met" if seconds <= TARGET_S else "NOT met"
    print(
        f"make bench: {seconds:.0f} s, {ran} cell(s) run, load {entry['load_at_end']} at the end "
        f"on {entry['cpu_count']} cores (target ≤ {TARGET_S:.0f} s in a fresh clone on 2 cores: "
        f"{met})"
    )
    if full:
        first = full[0]["seconds"]
        ratio = seconds / first
        met = "met" if ratio <= WARM_RATIO else "NOT met"
        print(
            f"make bench: {ratio:.2f}× the first full run here ({first:.0f} s, "
            f"{full[0]['date']}; target ≤ {WARM_RATIO} on a warm compile cache: {met})"
        )


def _history() -> list[dict]:
    if not HISTORY.is_file():
        return []
    return [json.loads(line) for line in HISTORY.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
