"""Peak memory of one engine case, measured in a fresh process.

tracemalloc cannot see torch's CPU allocator, so we read the process's peak resident set size
(ru_maxrss) before and after the case runs: the difference is what the case itself added. One
warm-up call with T = 1 comes first, so one-time library initialisation (lazy imports, functorch's
decomposition tables) is not charged to the case; it is the same for every case.
Usage: python -m benchmarks.peak_memory CASE  → one JSON line: case, base_mb, peak_mb, extra_mb.
"""

from __future__ import annotations

import json
import resource
import sys

from benchmarks.engine_cases import build, make_data


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(case: str) -> None:
    data = make_data()
    build(case, data, steps=1)()
    run = build(case, data)
    base = peak_rss_mb()
    run()
    peak = peak_rss_mb()
    print(json.dumps({"case": case, "base_mb": base, "peak_mb": peak, "extra_mb": peak - base}))


if __name__ == "__main__":
    main(sys.argv[1])
