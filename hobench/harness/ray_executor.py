"""`hobench run SUITE --executor ray`: each cell a Ray task, the driver the only writer.

Ray schedules the cells over a cluster (or a local one it starts); each runs in a fresh Ray
worker process (`max_calls=1`), so memory is still the cell's own and a crash is one failed
cell. A cell asks for the suite's `threads` CPUs, and one GPU when the suite's device is CUDA.
The record comes back to the driver, which appends it through the same locked store as a local
run, so resume, `--retry-failed` and Ctrl-C behave the same. A cell whose worker or node was
lost (not the cell's own doing) is recorded as failed with a `WorkerLost:` error and a plain
rerun of the command runs it again. Ray is an optional extra: `pip install 'hobench[ray]'`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from hobench.harness.cell import crash_record
from hobench.harness.suite import Cell

LOST = "WorkerLost"  # errors with this prefix are rerun by a resume, like a cell never run


class RayUnavailable(Exception):
    """--executor ray without Ray installed, or a cluster that cannot be reached."""


def _run_on_ray(job: dict[str, Any]) -> dict[str, Any]:
    """The Ray task: a fresh worker process runs one cell and returns its record."""
    from hobench.harness.worker import execute  # imports torch in the Ray worker

    # No run scratch folder on a remote node: values shared by cells are recomputed (same bits).
    return execute(job, shared=None)


@dataclass
class _RayCell:
    cell: Cell
    slot: int
    ref: Any  # the task's ObjectRef
    started: float
    status_path: None = None  # no live status from a remote worker


class RayPool:
    """The runner's pool interface (start, reap, stop, running), on Ray tasks."""

    def __init__(
        self,
        suite_name: str,
        manifest: dict[str, Any],
        data_dir: str | None,
        threads: int,
        device: str,
        address: str | None,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise RayUnavailable(
                "--executor ray needs Ray, which is not installed: pip install 'hobench[ray]'"
            ) from exc
        self.ray, self.suite_name, self.manifest = ray, suite_name, manifest
        self.data_dir, self.threads = data_dir, threads
        self.running: list[_RayCell] = []
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            # Workers get hobench's settings (plugins, data folder) and the driver's PYTHONPATH
            # (where plugins live); on a remote node a path that is not there is ignored.
            env = {k: v for k, v in os.environ.items() if k.startswith("HOBENCH_")}
            env.update({k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ})
            try:
                ray.init(
                    address=address,
                    runtime_env={"env_vars": env},
                    include_dashboard=False,
                    log_to_driver=False,  # cells log plenty; failures come back as errors
                    logging_level="WARNING",
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {exc}") from exc
        self.task = ray.remote(
            num_cpus=threads,
            num_gpus=1 if device.startswith("cuda") else 0,
            max_calls=1,  # a fresh process per cell
            max_retries=0,  # a crash is a result; a lost node is rerun by resume
            # Ray starts workers at niceness 15, as background work: on a node shared with
            # anything else a cell then waits for the CPU, and its time says so. A cell is the
            # work, as a local run's workers are.
            runtime_env={"env_vars": {"RAY_worker_niceness": str(os.nice(0))}},
        )(_run_on_ray)

    def start(self, cell: Cell, slot: int) -> None:
        job = {
            "cell": cell.to_dict(),
            "suite": self.suite_name,
            "data_dir": self.data_dir,
            "manifest": self.manifest,
            "threads": self.threads,
        }
        ref = self.task.remote(job)
        self.running.append(_RayCell(cell, slot, ref, time.perf_counter()))

    def free_slot(self) -> int:
        used = {cell.slot for cell in self.running}
        return next(slot for slot in range(len(used) + 1) if slot not in used)

    def reap(self) -> list[tuple[_RayCell, dict[str, Any]]]:
        if not self.running:
            return []
        refs = [cell.ref for cell in self.running]
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        done = [cell for cell in self.running if cell.ref in ready]
        for cell in done:
            self.running.remove(cell)
        return [(cell, self._record(cell)) for cell in done]

    def _record(self, cell: _RayCell) -> dict[str, Any]:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(cell.ref)
        except (
            exceptions.NodeDiedError,
            exceptions.ObjectLostError,
            exceptions.LocalRayletDiedError,
        ) as exc:
            error = f"{LOST}: {type(exc).__name__}: {_first_line(exc)}; rerun to retry"
        except exceptions.WorkerCrashedError as exc:
            error = f"WorkerCrash: Ray worker died: {_first_line(exc)}"
        except exceptions.RayError as exc:
            error = f"WorkerError: {type(exc).__name__}: {_first_line(exc)}"
        wall_s = time.perf_counter() - cell.started
        return crash_record(cell.cell, self.suite_name, self.manifest, error, wall_s)

    @staticmethod
    def log_tail(cell: _RayCell, lines: int = 0) -> str:
        return ""  # a remote worker's log is in Ray's session logs, not here

    def stop(self) -> None:
        for cell in self.running:
            self.ray.cancel(cell.ref, force=True)
        self.running.clear()
        if self._started_ray:
            self.ray.shutdown()


def _first_line(exc: BaseException) -> str:
    """The first sentence of the first line: Ray's messages run on over several sentences."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0].split(". ")[0].rstrip(".")[:300] if lines else ""
