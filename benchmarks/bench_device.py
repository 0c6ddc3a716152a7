"""The device the engine benchmarks run on: HOBENCH_BENCH_DEVICE = cpu (default), cuda or cuda:N.

On a GPU, kernels run asynchronously: a call returns once its kernels are queued, so a timer
stopped then measures the launches, not the work. `synced` makes a case's callable wait for its
device before returning, so every timed call (pytest-benchmark's rounds, the interleaved rounds,
the peak-memory subprocesses) measures the work itself. On CPU it returns the case unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import torch

DEVICE_ENV = "HOBENCH_BENCH_DEVICE"


def requested_device() -> str:
    """HOBENCH_BENCH_DEVICE as given (cpu when unset or empty); `device_problem` checks it."""
    return os.environ.get(DEVICE_ENV, "").strip() or "cpu"


def device_problem(device: str) -> str | None:
    """Why the benchmarks cannot run on `device`, in one line that names the fix; None if they
    can."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        return f"{DEVICE_ENV}={device!r} is not a device: use cpu, cuda or cuda:N"
    if device == "cpu":
        return None
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        return (
            f"{DEVICE_ENV}={device} but torch {torch.__version__} ({build}) sees no CUDA GPU: "
            f"run on a machine with an NVIDIA GPU and a CUDA build of torch, or unset {DEVICE_ENV} "
            "for the CPU benchmarks"
        )
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        return (
            f"{DEVICE_ENV}={device} but only {torch.cuda.device_count()} GPU(s) are visible: "
            f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return None


def is_cuda(device: str | torch.device) -> bool:
    return torch.device(device).type == "cuda"


def synced(run: Callable[[], Any], device: str | torch.device) -> Callable[[], Any]:
    """`run` ending with a wait for `device` on CUDA, so a timer around it times the work; on
    any other device `run` itself."""
    if not is_cuda(device):
        return run

    def run_and_wait():
        out = run()
        torch.cuda.synchronize(device)
        return out

    return run_and_wait


def device_meta(device: str) -> dict[str, Any]:
    """What the summary records about the device: its name, the GPU's name and CUDA version,
    and how peak memory was measured there."""
    if is_cuda(device):
        return {
            "device": device,
            "gpu": torch.cuda.get_device_name(torch.device(device)),
            "cuda": torch.version.cuda,
            "peak_memory": "torch.cuda.max_memory_allocated over what was allocated before the "
            "case, reset right before it",
        }
    return {
        "device": device,
        "gpu": None,
        "cuda": None,
        "peak_memory": "peak resident set size over the process's before the case",
    }
