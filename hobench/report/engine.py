"""The engine benchmarks' summary (`make bench-engine` writes results/engine-bench.json) as a
report table: time and extra peak memory of each hypergradient engine against plain training,
measured side by side in one run, beside the suite's own numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from hobench.report.errors import ReportError
from hobench.report.tables import DASH, Table


def _number(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return format(value, spec)


# The benchmark's case ids as a reader names them (a case not listed keeps its id).
CASE_NAMES = {
    "plain-analytic": "plain training (analytic gradient)",
    "plain-autograd": "plain training (autograd)",
    "reverse": "Reverse-HG",
    "reverse-eager": "Reverse-HG, eager",
    "forward-m1": "Forward-HG, m = 1",
    "forward-m1-eager": "Forward-HG, m = 1, eager",
    "forward-m3": "Forward-HG, m = 3",
    "forward-m10": "Forward-HG, m = 10",
    "rtho-m3": "RTHO, m = 3",
    "rtho-m3-eager": "RTHO, m = 3, eager",
    "torchopt": "torchopt MetaSGD, unrolled (peer)",
    "higher": "higher innerloop_ctx, unrolled (peer)",
}


def case_name(case: str) -> str:
    return CASE_NAMES.get(case, case)


def engine_table(path: Path) -> Table:
    """One row per engine case of the summary at `path`; raises ReportError when unreadable."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        cases, meta = summary["cases"], summary["meta"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReportError(
            f"{path}: not an engine-benchmark summary ({type(exc).__name__}: {exc}); "
            "run `make bench-engine` to write it, or leave out --engine"
        ) from None
    header = ["case", "median (s)", "× plain training", "extra peak memory (MB)"]
    rows = [
        [
            case_name(str(case["case"])),
            _number(case.get("median_s"), ".3f"),
            _number(case.get("ratio_to_plain"), ".2f"),
            _number(case.get("extra_peak_mb"), ".1f"),
        ]
        for case in cases
        if not case.get("skipped")
    ]
    # A GPU run (make bench-gpu) measures the CUDA allocator's memory, a CPU run the process's.
    gpu = meta.get("gpu")
    device = f"{meta.get('device', '?')}" + (f" ({gpu})" if gpu else "")
    memory = (
        "the GPU memory a case allocates at its peak over what was allocated before it"
        if gpu
        else "the peak RSS a case adds over the process before it"
    )
    machine = (
        f"{meta.get('cpu_count', '?')}-core {meta.get('processor') or meta.get('machine', '?')}"
    )
    caption = (
        f"Engine benchmarks ({path}, commit {meta.get('git_commit', '?')}, "
        f"{meta.get('date', '?')}, on a {machine}): {meta.get('shape', '?')}, "
        f"T = {meta.get('steps', '?')} steps, {device}, "
        f"torch {meta.get('versions', {}).get('torch', '?')}, "
        f"{meta.get('torch_threads', '?')} threads. Median of rounds; × plain: over plain "
        f"training ({case_name(str(summary.get('plain', '?')))}); extra peak memory: {memory}, "
        "so Reverse-HG's "
        "stored trajectory and the peers' (torchopt, higher) autograd graphs show. Regenerate "
        f"with `make {'bench-gpu' if gpu else 'bench-engine'}`."
    )
    data = pd.DataFrame(cases).set_index("case")
    title = "Engine: hypergradient time and extra memory"
    return Table("engine", title, header, rows, caption, data)
