"""The worker: one process per cell, forked from a zygote that has already imported torch.

Importing torch and the torch._dynamo that `torch.func.grad` and the FLOP counter pull in takes
about 4 s per process on a 2-core machine, longer than many cells run. So on CPU the runner asks
multiprocessing's forkserver to import this module once (the zygote: hobench.harness.zygote),
and each cell is a fresh fork of it: its own process still, so a segfault or an out-of-memory
kill is a failed cell, not a dead suite, and its memory window starts from its own baseline. The
zygote only imports: a backward pass before a fork would break autograd in every child
("Autograd and Fork" in PyTorch's wiki), and CUDA cannot be used across a fork, so CUDA cells
start from scratch (multiprocessing's spawn) instead.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cmaes  # noqa: F401  (the samplers' lazy imports: cmaes, and scipy's qmc for qmc)
import scipy.stats.qmc  # noqa: F401
import torch
import torch._decomp.decompositions_for_jvp  # noqa: F401  (forward mode's first use, ~0.5 s)
import torch._dynamo  # noqa: F401  (~2 s: what torch.func.grad and the FLOP counter load lazily)
import torch.func  # noqa: F401
from threadpoolctl import threadpool_limits
from torch.utils.flop_counter import FlopCounterMode

import hobench.strategies  # noqa: F401  (the built-ins and optuna, imported in the zygote)
import hobench.tasks  # noqa: F401
from hobench.harness import compile_cache
from hobench.harness.cell import run_cell
from hobench.harness.failures import EXIT_STORAGE, storage_error
from hobench.harness.shared import use_folder
from hobench.harness.store import dumps
from hobench.harness.suite import Cell, load_registries
from hobench.registry import TASKS
from hobench.tasks.base import Task

# A run that compiles starts the compiler here, in the zygote, once (the runner says so).
if os.environ.get(compile_cache.PRELOAD_ENV) == "1":
    compile_cache.preload()

# What is alive now (torch, the compiler, ~350 000 objects) lives as long as the process: out
# of the garbage collector's sight, a cell forked from the zygote does not walk it on every full
# collection (0.17 s each), nor copy the pages it would write its marks on. The imports'
# garbage is collected first, not frozen into every cell.
gc.collect()
gc.freeze()


def run_job(job: dict[str, Any], out_path: str, log_path: str, env: dict[str, str]) -> None:
    """A worker process's whole life: run the job's cell, write its record to `out_path`."""
    # Ctrl-C reaches the whole process group; the runner owns it and stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    os.chdir(job["cwd"])  # the runner's now (relative paths), not the zygote's when it started
    try:
        _run_job(job, Path(out_path), log_path, env)
    except OSError as exc:
        if not storage_error(exc):
            raise
        # The disk is full: no record (it would say the cell failed) and no traceback (the log
        # cannot take it). The runner reads the status and stops the run in one line.
        os._exit(EXIT_STORAGE)


def _run_job(job: dict[str, Any], out: Path, log_path: str, env: dict[str, str]) -> None:
    with open(log_path, "wb") as log:  # stdout and stderr, also of C code, go to the cell's log
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    # The runner's environment now, not the zygote's from when it started (threads, GPU, status).
    os.environ.clear()
    os.environ.update(env)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")
    record = execute(job, shared=out.parent / "shared")  # the run's scratch: values its cells share
    tmp = out.with_suffix(".tmp")
    tmp.write_text(dumps(record), encoding="utf-8")
    os.replace(tmp, out)  # the runner sees a whole record or none
    sys.stdout.flush()
    sys.stderr.flush()


def execute(job: dict[str, Any], shared: Path | None) -> dict[str, Any]:
    """Run the job's cell in this (fresh) process and return its record; also the body of a
    Ray task. `shared`: the folder of values computed once per run (None: compute each)."""
    if job.get("threads"):
        # The zygote loaded torch's OpenMP and numpy's BLAS before any thread count was known;
        # both now get the suite's, as environment variables would have set them at load.
        threadpool_limits(int(job["threads"]))
        torch.set_num_threads(int(job["threads"]))
    load_registries()
    _warm_up(job["cell"]["task_kind"])
    use_folder(shared)
    return run_cell(Cell.from_dict(job["cell"]), job["suite"], job["data_dir"], job["manifest"])


def _exit_with_parent() -> None:
    """Exit when the parent goes (the forkserver ends with the runner; spawn's parent is the
    runner): an orphaned worker after a SIGKILLed runner would only burn the machine."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _warm_up(task_kind: str) -> None:
    """Run once what a cell initialises lazily on first use (autograd's engine, torch.func, the
    FLOP counter for tasks with a gradient problem), so the memory baseline a cell is measured
    against includes it and a cell's added memory is its own. The imports are the zygote's."""
    x = torch.ones(4, 4, requires_grad=True)
    (x @ x).tanh().sum().backward()
    torch.func.jvp(torch.tanh, (x.detach(),), (x.detach(),))
    known = task_kind in TASKS.names()  # an unknown kind fails in run_cell, with its error
    if known and TASKS.get(task_kind).gradient_problem is not Task.gradient_problem:
        with FlopCounterMode(display=False):
            (x @ x).sum().backward()
