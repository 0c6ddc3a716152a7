"""Measurements of the machine and the process: memory, device, calibration and the manifest."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

import hobench
from hobench.harness.store import write_atomic

PACKAGES = ("torch", "optuna", "numpy", "pandas")


class DeviceError(ValueError):
    """A device that this machine cannot provide (e.g. cuda without a GPU)."""


def resolve_device(device: str) -> str:
    """`auto` → cuda when available, else cpu; a CUDA device must exist."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but CUDA is not available; use cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) visible"
            )
    return device


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    On Linux this is VmHWM, the high-water mark of this process's own address space: ru_maxrss
    is carried over fork and exec, so a worker started by a 700 MB parent would report at
    least 700 MB. Elsewhere ru_maxrss (KiB on Linux and BSD, bytes on macOS).
    """
    peak_mb = _proc_status_mb("VmHWM")
    if peak_mb is not None:
        return peak_mb
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _proc_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (Linux) in MB; None where there is none."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def current_rss_mb() -> float | None:
    """Resident memory of this process now, in MB (Linux's VmRSS; None elsewhere)."""
    return _proc_status_mb("VmRSS")


class MemoryMeter:
    """The memory a cell adds over its worker (which has imported torch and friends: 300-500 MB,
    build-dependent), in MB, on Linux; None elsewhere.

    RSS growth also counts the pages of library code and files a cell touches for the first
    time: most of a small cell's growth, and the processor's, not the cell's (torch pages in the
    kernels for the CPU's instruction set: a ridge cell added 12-19 MB of code on one Xeon,
    8-10 MB in all on an EPYC, 1 MB of data on both). So the peak RSS of each phase (setup,
    run) is taken less the file-backed pages paged in by that phase's end: file pages are not
    evicted while a cell runs, so each phase's figure is a lower bound of the anonymous memory
    at its peak, exact when the phase's code was paged in before its peak; phases keep the
    bound tight (a task's data loading peaks before the strategy's kernels are paged in).
    """

    def __init__(self) -> None:
        self.rss_mb = current_rss_mb()
        self.file_mb = _proc_status_mb("RssFile")
        self.paged_mb: float | None = None
        self.peak_mb = 0.0  # the raw peak RSS over the phases
        self._peaks: list[float] = []
        if self.rss_mb is not None and not _reset_peak():
            self.rss_mb = None  # no VmHWM reset (Linux < 4.0): no added-memory figure

    def end_phase(self) -> None:
        """Close a phase: its peak, less what is paged in so far; the next phase's peak starts
        from now."""
        peak_mb, file_mb = peak_rss_mb(), _proc_status_mb("RssFile")
        self.peak_mb = max(self.peak_mb, peak_mb)
        if self.rss_mb is None or self.file_mb is None or file_mb is None:
            return
        self.paged_mb = max(0.0, file_mb - self.file_mb)
        self._peaks.append(peak_mb - self.paged_mb)
        _reset_peak()

    @property
    def added_mb(self) -> float | None:
        if not self._peaks:
            return None
        return max(0.0, max(self._peaks) - self.rss_mb)


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: "5" to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _cpu_name() -> str:
    """The processor's model name, the instruction set torch's kernels dispatch to, and a digest
    of its feature flags (which MKL and oneDNN dispatch on): a virtual machine's generic name
    ("Intel(R) Xeon(R) Processor") covers several generations, and bit-identical results need
    the same kernels."""
    info: dict[str, str] = {}  # the first processor's fields
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = info.get("model name") or platform.processor() or platform.machine()
    flags = info.get("flags", "")
    isa = torch.backends.cpu.get_cpu_capability()
    if flags:
        isa += ", flags " + hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:6]
    return f"{model} ({isa})"


def device_info(device: str) -> dict[str, Any]:
    """The device, its human name, and the CUDA version when it is a GPU."""
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        name = torch.cuda.get_device_name(index)
        return {"device": device, "device_name": name, "cuda": torch.version.cuda}
    return {"device": device, "device_name": _cpu_name(), "cuda": None}


def synchronize(device: str) -> None:
    """Wait for queued GPU work so wall-clock times include it; no-op on CPU."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _reference_workload() -> None:
    """One unit of the calibration: BLAS work and interpreter work, like a strategy's mix."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(512, 512, generator=generator)
    b = a
    for _ in range(16):
        b = torch.tanh(a @ b)
    total = 0
    for i in range(200_000):  # the interpreter's share of a strategy's work
        total += i * i % 7


# Bumped whenever the calibration's workload or statistic changes: times normalised by two
# different calibrations are not comparable (version 1: one ~25 ms unit, median of 3).
CALIBRATION_VERSION = 2
CALIBRATION_MIN_S = 0.5  # each repeat runs whole units for at least this long
CALIBRATION_REPEATS = 5
CALIBRATION_CACHE_S = 600.0  # a measurement this recent, of the same setup, is reused


@dataclass
class Calibration:
    """Seconds per workload unit (median over repeats) and the spread of the repeats."""

    unit_s: float
    units: int  # units per repeat: enough for CALIBRATION_MIN_S
    repeats: list[float]  # seconds per unit of each repeat

    @property
    def spread(self) -> float:
        """Median absolute deviation of the repeats over their median: the spread that matters
        for a median, which one slow repeat (a burst of load elsewhere) does not move."""
        deviations = [abs(t - self.unit_s) for t in self.repeats]
        return statistics.median(deviations) / self.unit_s


def measure_calibration(
    min_s: float = CALIBRATION_MIN_S, repeats: int = CALIBRATION_REPEATS
) -> Calibration:
    """Time the reference workload the way `timeit.Timer.autorange` does: whole units, as many
    as fill `min_s`, `repeats` times; the median seconds per unit is the calibration.

    One 25 ms unit is too noisy to divide by (a scheduler tick is a large part of it); a repeat of
    at least 0.5 s and the median of 5 are stable to a few percent on an idle machine. Reporting
    seconds per unit keeps the number comparable between a fast and a slow machine, which run
    different counts of units.
    """
    _reference_workload()  # warm-up: the first call pays for lazy initialisation
    units, elapsed = 1, 0.0
    while True:  # find how many units fill min_s (1, 2, 4, ...), timing as we go
        start = time.perf_counter()
        for _ in range(units):
            _reference_workload()
        elapsed = time.perf_counter() - start
        if elapsed >= min_s:
            break
        units = max(units * 2, math.ceil(units * min_s / max(elapsed, 1e-9)))
    times = [elapsed / units]
    for _ in range(repeats - 1):
        start = time.perf_counter()
        for _ in range(units):
            _reference_workload()
        times.append((time.perf_counter() - start) / units)
    return Calibration(statistics.median(times), units, times)


def _cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "hobench" / "calibration.json"


def _calibration_key(threads: int) -> str:
    """What a cached calibration must match to be reused: this setup (host, CPU, torch build)."""
    setup = (CALIBRATION_VERSION, socket.gethostname(), _cpu_name(), torch.__version__, threads)
    return "|".join(map(str, setup))


def remember_calibration(unit_s: float, threads: int) -> None:
    """Cache `unit_s` as this setup's calibration, measured now, for `calibrate` to reuse."""
    entry = {_calibration_key(threads): {"unit_s": unit_s, "at": time.time()}}
    with contextlib.suppress(OSError):  # best effort: a read-only home costs the next run 3 s
        write_atomic(_cache_path(), json.dumps(entry))


def calibrate() -> float:
    """Seconds per unit of the reference workload (see `measure_calibration`), to normalise
    times across machines. A measurement of the same setup (host, CPU, torch build, threads)
    from the last `CALIBRATION_CACHE_S` seconds is reused: every suite run would otherwise
    spend about 3 s on it, and the machine has not changed speed in ten minutes."""
    threads = torch.get_num_threads()
    try:
        saved = json.loads(_cache_path().read_text(encoding="utf-8"))
        cached = saved.get(_calibration_key(threads))
        if cached and 0 <= time.time() - cached["at"] < CALIBRATION_CACHE_S:
            return float(cached["unit_s"])
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass
    unit_s = measure_calibration().unit_s
    remember_calibration(unit_s, threads)
    return unit_s


def git_commit() -> str | None:
    """The commit of the hobench checkout, or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(hobench.__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def manifest(device: str, threads: int | None = None) -> dict[str, Any]:
    """What produced a result: versions, commit, machine, device and a calibration time.

    `threads` is the torch thread count workers will use; calibration runs with it too.
    `calibration_s` is seconds per unit of the reference workload (`calibrate`), measured the
    way `calibration_version` says.
    """
    before = torch.get_num_threads()
    threads = threads or before
    torch.set_num_threads(threads)
    try:
        calibration = calibrate()
    finally:
        torch.set_num_threads(before)
    return {
        "hobench": hobench.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "packages": {name: _package_version(name) for name in PACKAGES},
        **device_info(device),
        "threads": threads,
        "hostname": socket.gethostname(),
        "started_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "calibration_s": round(calibration, 6),
        "calibration_version": CALIBRATION_VERSION,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
