"""Peak memory of one engine case, measured in a fresh process.

tracemalloc cannot see torch's CPU allocator, so we read the process's resident set size: the
case's extra peak is its peak RSS while it runs minus the RSS just before it starts. One warm-up
call with T = 1 comes first, so one-time library initialisation (lazy imports, functorch's
decomposition tables) is not charged to the case; it is the same for every case.
Usage: python -m benchmarks.peak_memory CASE  → one JSON line: case, base_mb, peak_mb, extra_mb,
method, and cuda_peak_mb (None on CPU).

On a GPU (HOBENCH_BENCH_DEVICE=cuda) the case's memory is the GPU's, not the process's RSS: the
CUDA caching allocator's peak (`torch.cuda.max_memory_allocated`, reset right before the case)
minus what was allocated just before it (the data, the warm-up's leftovers). It counts live
tensors, not the allocator's cached blocks nor the CUDA context, so it needs none of the RSS
details below.

Two details keep the number honest:
- On Linux the peak is the kernel's VmHWM, reset (`echo 5 > /proc/self/clear_refs`) right before
  the case runs, so an earlier transient (making the data, the warm-up) cannot hide the case's own
  peak. Elsewhere it falls back to getrusage's ru_maxrss, which cannot be reset: then a case
  whose peak stays below an earlier one reports 0.
- glibc's malloc raises its mmap threshold each time a large block is freed, so later large
  tensors (a step's temporaries) come from the heap, fragment it, and the peak RSS creeps up with
  the number of steps by chance rather than by what is alive (seen here: ±15 MB between runs of
  the same case). `main` pins the threshold first, so every large block is mapped and unmapped on
  its own and the peak RSS follows the live memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import re
import resource
import sys
from pathlib import Path

import torch

from benchmarks.bench_device import is_cuda
from benchmarks.engine_cases import DEVICE, build, make_data

M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h
PROC_STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def pin_mmap_threshold(nbytes: int = 128 * 1024) -> bool:
    """Fix glibc's mmap threshold (this also stops its dynamic adjustment); False off glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, nbytes))
    except (OSError, AttributeError):
        return False


def _status_mb(field: str) -> float:
    match = re.search(rf"^{field}:\s+(\d+) kB", PROC_STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"no {field} in {PROC_STATUS}")
    return int(match.group(1)) / 1024


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where unsupported."""
    try:
        CLEAR_REFS.write_text("5")
        return _status_mb("VmHWM") <= _status_mb("VmRSS") + 1.0
    except OSError:
        return False


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(run) -> dict[str, float | str | None]:
    """Run `run()` once; the RSS before, the peak RSS during, and their difference, in MB."""
    gc.collect()
    if reset_peak():
        base = _status_mb("VmRSS")
        run()
        peak, method = _status_mb("VmHWM"), "VmHWM reset by clear_refs"
    else:
        base = peak_rss_mb()
        run()
        peak, method = peak_rss_mb(), "ru_maxrss"
    extra = max(peak - base, 0.0)
    return {
        "base_mb": base,
        "peak_mb": peak,
        "extra_mb": extra,
        "method": method,
        "cuda_peak_mb": None,
    }


def measure_cuda(run, device: str) -> dict[str, float | str | None]:
    """Run `run()` once (it waits for the GPU before returning); the GPU memory allocated before,
    the allocator's peak during, and their difference, in MB."""
    gc.collect()
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device) / 2**20
    torch.cuda.reset_peak_memory_stats(device)
    run()
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    return {
        "base_mb": base,
        "peak_mb": peak,
        "extra_mb": max(peak - base, 0.0),
        "method": "torch.cuda.max_memory_allocated, reset before the case",
        "cuda_peak_mb": peak,
    }


NO_PIN_ENV = "HOBENCH_BENCH_NO_PIN"  # "1": glibc's own dynamic mmap threshold, as users run


def main(case: str) -> None:
    pinned = os.environ.get(NO_PIN_ENV) != "1" and pin_mmap_threshold()
    data = make_data()
    build(case, data, steps=1)()
    run = build(case, data)
    measured = measure_cuda(run, DEVICE) if is_cuda(DEVICE) else measure(run)
    print(json.dumps({"case": case, "device": DEVICE, "pinned": pinned, **measured}))


if __name__ == "__main__":
    main(sys.argv[1])
