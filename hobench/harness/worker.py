"""Worker entry point: `python -m hobench.harness.worker OUT_JSON` runs one cell.

The job (cell, suite name, data dir, manifest, threads, runner pid) arrives as JSON on stdin;
the record is written to OUT_JSON. One fresh process per cell makes peak memory the cell's own
and turns a segfault or an out-of-memory kill into a failed cell instead of a dead suite.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from hobench.harness.cell import run_cell
from hobench.harness.shared import use_folder
from hobench.harness.store import dumps
from hobench.harness.suite import Cell, load_registries
from hobench.registry import TASKS
from hobench.tasks.base import Task


def _exit_with_parent(runner_pid: int) -> None:
    """Exit when the runner dies (e.g. SIGKILL): an orphaned worker would only burn the machine.

    The runner's pid comes with the job, because the runner may already be gone by the time
    this process has imported torch.
    """

    def watch() -> None:
        while True:
            if os.getppid() != runner_pid:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _warm_up(task_kind: str) -> None:
    """Load what a cell loads lazily on first use (autograd, torch.func; for tasks with a
    gradient problem also the FLOP counter and the torch._dynamo it imports, ~2 s and ~70 MB),
    so the memory baseline a cell is measured against includes it and a cell's added memory is
    its own. Tasks without a gradient problem (no FLOP counting, no torch.func.grad) skip it."""
    x = torch.ones(4, 4, requires_grad=True)
    (x @ x).tanh().sum().backward()
    torch.func.jvp(torch.tanh, (x.detach(),), (x.detach(),))
    known = task_kind in TASKS.names()  # an unknown kind fails in run_cell, with its error
    if known and TASKS.get(task_kind).gradient_problem is not Task.gradient_problem:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False):
            (x @ x).sum().backward()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m hobench.harness.worker OUT_JSON < job.json", file=sys.stderr)
        return 2
    # Ctrl-C reaches the whole process group; the runner owns it and stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    job = json.load(sys.stdin)
    _exit_with_parent(int(job["runner_pid"]))
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    load_registries()
    _warm_up(job["cell"]["task_kind"])
    out = Path(argv[0])
    use_folder(out.parent / "shared")  # the run's scratch folder: values shared by its cells
    record = run_cell(Cell.from_dict(job["cell"]), job["suite"], job["data_dir"], job["manifest"])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(dumps(record), encoding="utf-8")
    os.replace(tmp, out)  # the parent sees a whole record or none
    return 0


if __name__ == "__main__":
    sys.exit(main())
