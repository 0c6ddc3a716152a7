"""Measurements of the machine and the process: memory, device, calibration and the manifest."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

import hobench

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
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float | None:
    """Resident memory of this process now, in MB (Linux's VmRSS; None elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def start_memory_window() -> float | None:
    """Reset the peak-RSS mark to the current RSS and return that RSS in MB (the baseline).

    A cell's worker has already imported torch and friends (300-500 MB, build-dependent); the
    peak after this call minus the baseline is what the cell itself adds. Linux >= 4.0 resets
    VmHWM on writing "5" to clear_refs; where that fails, None (no added-memory figure).
    """
    baseline = current_rss_mb()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return None
    return baseline


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(512, 512, generator=generator)
    b = a
    for _ in range(16):
        b = torch.tanh(a @ b)
    total = 0
    for i in range(200_000):  # the interpreter's share of a strategy's work
        total += i * i % 7


def calibrate() -> float:
    """Seconds for a fixed reference workload (median of 3), to normalise times across machines."""
    _reference_workload()  # warm-up: first call pays for lazy initialisation
    times = []
    for _ in range(3):
        start = time.perf_counter()
        _reference_workload()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
