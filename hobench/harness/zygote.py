"""How a cell's process starts, without the runner importing the worker module.

The worker module imports torch's compiler stack (torch._dynamo, and inductor's code
generators when cells compile: 2-5 s on 2 cores). On CPU, multiprocessing's forkserver (the
zygote) imports it once and every cell is a fork of it; the runner itself needs none of it. So
the runner names the worker through `run_job` here, which imports it only in the cell's
process, where the zygote has imported it already, and starts the zygote before its own
checks, so that the two processes' imports overlap instead of queueing.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from multiprocessing.context import BaseContext
from typing import Any

WORKER = "hobench.harness.worker"


def context(device: str) -> BaseContext:
    """How worker processes start: forked from the zygote on CPU, from scratch on CUDA (CUDA
    cannot be used across a fork)."""
    if device.startswith("cuda"):
        return multiprocessing.get_context("spawn")
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload([WORKER])  # read when the server starts, the first time
    return forkserver


def start(context: BaseContext) -> None:
    """Start the zygote now if it is not running; returns at once, the zygote importing in
    the background until the first cell's start waits for it."""
    if context.get_start_method() == "forkserver":
        multiprocessing.forkserver.ensure_running()


def run_job(job: dict[str, Any], out_path: str, log_path: str, env: dict[str, str]) -> None:
    """A cell process's entry point: the worker's, imported already in a zygote's fork."""
    from hobench.harness import worker

    worker.run_job(job, out_path, log_path, env)
