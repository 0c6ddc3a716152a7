"""Run a suite: each unfinished cell in a fresh worker process, records appended as they finish.

Resuming is the default: cells already in the results file are skipped, so a killed or
interrupted run continues where it stopped (`--retry-failed` also reruns the failed ones). The
parent is the only writer of the results file and holds its lock for the whole run: a second
run on the same directory waits, then finds the first one's cells done.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TextIO

import torch
from tqdm import tqdm

from hobench.harness import compile_cache, zygote
from hobench.harness.budget import LIMITS
from hobench.harness.cell import crash_record, jsonable
from hobench.harness.failures import EXIT_STORAGE, StorageFull
from hobench.harness.measure import manifest as make_manifest
from hobench.harness.measure import resolve_device
from hobench.harness.preflight import check_budgets
from hobench.harness.ray_executor import LOST, RayPool
from hobench.harness.recorder import STATUS_ENV
from hobench.harness.store import ResultsStore, StoreError
from hobench.harness.suite import Cell, Suite
from hobench.harness.warmup import compiles, mark_warm, pairs_to_warm
from hobench.hypergrad.compiled import ENV as COMPILE_ENV

POLL_S = 0.05
STOP_GRACE_S = 3.0
LOG_TAIL_LINES = 30
WORKDIR = ".work"  # scratch folder of the workers, inside the results directory
EXECUTORS = ("local", "ray")  # local: forked worker processes; ray: Ray tasks


@dataclass
class RunSummary:
    """What one `run_suite` call did. `failed` lists this run's failed cell keys."""

    suite: str
    results_path: Path
    selected: int  # cells of the suite after --only
    skipped: int  # already finished before this run (resume)
    ok: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False
    wall_s: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)
    warmed: int = 0  # task x strategy pairs compiled before the cells (hobench.harness.warmup)
    compile_s: float = 0.0  # their compile seconds, off every cell's clock

    @property
    def ran(self) -> int:
        return len(self.ok) + len(self.failed)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _gpu_slots(device: str, jobs: int) -> list[str] | None:
    """The CUDA_VISIBLE_DEVICES value of each worker slot, when jobs spread over several GPUs."""
    if device != "cuda" or jobs < 2 or torch.cuda.device_count() < 2:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:  # the GPUs this process may use, by the names the driver knows them
        return [gpu.strip() for gpu in visible.split(",")]
    return [str(i) for i in range(torch.cuda.device_count())]


def _check_not_stale(cells: list[Cell], records: list[dict[str, Any]], path: Path) -> None:
    """Refuse to resume over results of a different configuration under the same cell key."""
    by_key = {record["cell"]: record for record in records}
    for cell in cells:
        record = by_key.get(cell.key)
        if record is None:
            continue
        expected = jsonable(
            {
                "task_kind": cell.task_kind,
                "task_params": cell.task_params,
                "strategy_kind": cell.strategy_kind,
                "strategy_params": cell.strategy_params,
                "budget": {name: cell.budget.get(name) for name in LIMITS},
            }
        )
        expected["threads"] = cell.threads
        expected["compile"] = compiles(cell)  # compiled and eager cells round differently
        found = {
            **record,
            "threads": (record.get("manifest") or {}).get("threads"),
            "compile": record.get("compile", bool(record["strategy_params"].get("compile"))),
        }
        for key, value in expected.items():
            if found.get(key) != value:
                raise StoreError(
                    f"{path}: cell {cell.key} was run with a different {key} "
                    f"({found.get(key)!r}, suite now says {value!r}); "
                    "rerun with --force or use another --results-dir"
                )


class Progress:
    """Progress on stderr: one line per finished cell, with the suite's ETA (the only output
    with --quiet or when stderr is not a terminal, e.g. a CI log); on a terminal also a live
    tqdm bar with cells done/total, the ETA, and each running cell's budget spent and incumbent
    (from the status file its worker's Recorder writes)."""

    def __init__(self, total: int, quiet: bool, stream: TextIO | None = None) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() and not quiet
        self.started = time.perf_counter()
        self._status_at = 0.0
        self.bar: tqdm | None = None

    def begin(self) -> None:
        """The cells start now: the ETA counts from here, not from the calibration before."""
        self.started = time.perf_counter()
        if self.tty and self.total:
            self.bar = tqdm(
                total=self.total,
                file=self.stream,
                unit="cell",
                ncols=_terminal_size(self.stream)[0],
                nrows=_terminal_size(self.stream)[1],
                smoothing=0.1,
                bar_format="{n_fmt}/{total_fmt} cells |{bar:20}| {elapsed}<{remaining}{postfix}",
            )

    def say(self, text: str, always: bool = False) -> None:
        if self.quiet and not always:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)  # above the bar, which is redrawn
        else:
            print(text, file=self.stream, flush=True)

    def eta(self) -> str:
        """Time left at the pace so far (cells run in parallel are in that pace)."""
        if not self.done or self.done >= self.total:
            return ""
        pace = (time.perf_counter() - self.started) / self.done
        return f", eta {tqdm.format_interval(pace * (self.total - self.done))}"

    def finished(self, record: dict[str, Any]) -> None:
        self.done += 1
        ok = record["status"] == "ok"
        wall = record["resources"].get("wall_s") or 0.0
        head = f"[{self.done}/{self.total}] {record['cell']} {'ok' if ok else 'FAILED'} {wall:.1f}s"
        if not ok:
            self.say(f"{head} {record['error']}{self.eta()}", always=True)
        elif self.quiet:
            self.say(f"{head}{self.eta()}", always=True)
        else:
            final = record["final"]
            metrics = " ".join(
                f"{key}={final[key]:.4g}"
                for key in ("val_loss", "test_acc", "regret")
                if isinstance(final.get(key), int | float)
            )
            self.say(f"{head} {metrics}".rstrip() + self.eta())
        if self.bar is not None:
            self.bar.update(1)

    def running(self, cells: list[tuple[str, dict[str, Any] | None]]) -> None:
        """Each running cell's key and its worker's last status (None before the first)."""
        now = time.perf_counter()
        if self.bar is None or now - self._status_at < 0.5:
            return
        self._status_at = now
        parts = []
        for key, status in cells:
            text = key
            if status:
                text += f" {status.get('spent', 0.0):.0%}"
                if status.get("incumbent_val_loss") is not None:
                    text += f" best {status['incumbent_val_loss']:.4g}"
            parts.append(text)
        self.bar.set_postfix_str("; ".join(parts), refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    """The terminal's columns and lines; a pseudo-terminal that reports 0 x 0 (tqdm would then
    draw nothing) gets $COLUMNS or 100 and 24."""
    try:
        columns, lines = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        columns, lines = 0, 0
    return columns or int(os.environ.get("COLUMNS") or 0) or 100, lines or 24


def _read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not written yet, or between writes


@dataclass
class _Worker:
    cell: Cell
    slot: int
    process: BaseProcess
    out_path: Path
    log_path: Path
    started: float
    status_path: Path | None = None  # the worker's Recorder writes its progress here


class _Pool:
    """Starts cells in worker processes and turns each exit into a record."""

    def __init__(
        self,
        suite_name: str,
        manifest: dict[str, Any],
        data_dir: str | None,
        threads: int,
        gpu_slots: list[str] | None,
        workdir: Path,
        device: str = "cpu",
    ) -> None:
        self.suite_name, self.manifest, self.data_dir = suite_name, manifest, data_dir
        self.threads, self.gpu_slots, self.workdir = threads, gpu_slots, workdir
        self.context, self.target = zygote.context(device), zygote.run_job
        self.spawns = self.context.get_start_method() == "spawn"
        with _sigint_ignored():  # started now, the zygote inherits Ctrl-C ignored
            zygote.start(self.context)  # in the background: its imports overlap the runner's
        self.running: list[_Worker] = []
        self.launched = 0

    def _env(self, slot: int) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(self.threads)
        if self.gpu_slots:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu_slots[slot % len(self.gpu_slots)]
        return env

    def start(self, cell: Cell, slot: int) -> None:
        self.launched += 1
        out_path, log_path, status_path = (
            self.workdir / f"cell{self.launched}.{suffix}" for suffix in ("out", "log", "status")
        )
        job = {
            "cell": cell.to_dict(),
            "suite": self.suite_name,
            "data_dir": self.data_dir,
            "manifest": self.manifest,
            "threads": self.threads,
        }
        env = {**self._env(slot), STATUS_ENV: str(status_path)}
        job["cwd"] = os.getcwd()  # the zygote's is the runner's when it started, maybe not now
        process = self.context.Process(
            target=self.target, args=(job, str(out_path), str(log_path), env), name=cell.key
        )
        with _interrupts_deferred():  # a started worker is always one that stop() can reach
            # A spawned worker is a fresh interpreter: it inherits Ctrl-C ignored from here.
            with _sigint_ignored() if self.spawns else contextlib.nullcontext():
                process.start()
            now = time.perf_counter()
            self.running.append(_Worker(cell, slot, process, out_path, log_path, now, status_path))

    def free_slot(self) -> int:
        used = {worker.slot for worker in self.running}
        return next(slot for slot in range(len(used) + 1) if slot not in used)

    def reap(self) -> list[tuple[_Worker, dict[str, Any]]]:
        """Records of the workers that have exited since the last call.

        A worker stopped by SIGINT or SIGTERM was stopped from outside: its cell did not finish,
        so the run stops as on Ctrl-C and a resume reruns the cell.
        """
        done = [worker for worker in self.running if worker.process.exitcode is not None]
        for worker in done:
            self.running.remove(worker)
        if any(w.process.exitcode in (-signal.SIGINT, -signal.SIGTERM) for w in done):
            raise KeyboardInterrupt
        return [(worker, self._record(worker)) for worker in done]

    def _record(self, worker: _Worker) -> dict[str, Any]:
        code = worker.process.exitcode
        worker.process.close()
        if code == EXIT_STORAGE:  # not the cell's failure: stop the run, record nothing
            problem = OSError(errno.ENOSPC, "a worker's record or scratch file was refused")
            raise StorageFull(worker.out_path.parent, problem)
        if code == 0:
            try:
                return json.loads(worker.out_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                error = f"WorkerError: worker exited 0 without a readable record ({exc})"
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            error = f"WorkerCrash: worker killed by signal {-code} ({name}){hint}"
        else:
            error = f"WorkerCrash: worker exited with code {code}: {self.log_tail(worker, 1)}"
        wall_s = time.perf_counter() - worker.started
        return crash_record(worker.cell, self.suite_name, self.manifest, error, wall_s)

    @staticmethod
    def log_tail(worker: _Worker, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = worker.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])

    def stop(self) -> None:
        """Terminate every running worker: SIGTERM, then SIGKILL after a grace period."""
        for worker in self.running:
            if worker.process.exitcode is None:
                worker.process.terminate()
        deadline = time.perf_counter() + STOP_GRACE_S
        for worker in self.running:
            worker.process.join(timeout=max(0.0, deadline - time.perf_counter()))
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join()
        self.running.clear()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ctrl-C ignored while a child interpreter is exec'd (the forkserver, a spawned worker).

    Ctrl-C reaches the whole process group. A child exec'd with SIGINT ignored keeps it ignored
    (Python installs its KeyboardInterrupt handler only over the default), so the user's Ctrl-C
    never kills one mid-import with a traceback (and the runner with an EOFError): the runner
    stops its children itself. The exec takes milliseconds; a Ctrl-C inside them is lost.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then raise KeyboardInterrupt.

    Raised inside `Process.start`, after the fork but before the runner knows the pid, it
    would leave a worker that `stop()` cannot reach, running while its scratch folder is removed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread
        return
    caught: list[int] = []
    # An ignored signal (a background job's Ctrl-C) stays ignored.
    signals = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) != signal.SIG_IGN]
    previous = [signal.signal(s, lambda signum, frame: caught.append(signum)) for s in signals]
    try:
        yield
    finally:
        for signum, handler in zip(signals, previous, strict=True):
            # None: a handler set outside Python, which cannot be put back; the default then.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    if caught:
        raise KeyboardInterrupt


def run_suite(
    suite: Suite,
    results_dir: str | Path,
    jobs: int = 1,
    force: bool = False,
    data_dir: str | None = None,
    device: str | None = None,
    quiet: bool = False,
    cell_filter: str | None = None,
    retry_failed: bool = False,
    wait: bool = True,
    executor: str = "local",
    address: str | None = None,
) -> RunSummary:
    """Run the suite's unfinished cells (`cell_filter`: substring of the cell key) into
    `results_dir/runs.jsonl`; `force` reruns finished ones, `retry_failed` the failed ones.
    Another run on the same directory is waited for (`wait=False`: refused). Ctrl-C stops
    cleanly. `executor="ray"` runs the cells as Ray tasks (`address`: a cluster's; None
    starts a local one); `jobs` is then how many are in flight at once."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    started = time.perf_counter()
    resolved = resolve_device(device or suite.device)  # fail before anything runs
    cells = [c for c in suite.cells(device) if not cell_filter or cell_filter in c.key]
    store = ResultsStore(results_dir)
    # The writer's lock for the whole run: no other run records a cell here meanwhile.
    with store.locked(wait, on_wait=lambda line: print(line, file=sys.stderr, flush=True)):
        return _run_locked(
            suite, cells, store, jobs, force, retry_failed, data_dir, resolved, quiet, started,
            (executor, address),
        )  # fmt: skip


def _cells_to_rerun(
    cells: list[Cell], records: list[dict[str, Any]], force: bool, retry_failed: bool
) -> set[str]:
    """Keys of finished cells to run again: all with --force, the failed with --retry-failed,
    and always those whose Ray worker or node was lost (the cell never had its run)."""
    if force:
        return {cell.key for cell in cells}
    failed = {record["cell"] for record in records if record.get("status") != "ok"}
    if not retry_failed:
        failed = {r["cell"] for r in records if (r.get("error") or "").startswith(f"{LOST}:")}
    return {cell.key for cell in cells if cell.key in failed}


def _run_locked(
    suite: Suite,
    cells: list[Cell],
    store: ResultsStore,
    jobs: int,
    force: bool,
    retry_failed: bool,
    data_dir: str | None,
    resolved: str,
    quiet: bool,
    started: float,
    executor: tuple[str, str | None],
) -> RunSummary:
    records = store.load()
    rerun = _cells_to_rerun(cells, records, force, retry_failed)
    # Cells that will be rerun may have been run with anything; the kept ones must match.
    _check_not_stale([c for c in cells if c.key not in rerun], records, store.path)
    done = {record["cell"] for record in records} - rerun
    todo = [cell for cell in cells if cell.key not in done]
    summary = RunSummary(suite.name, store.path, len(cells), len(cells) - len(todo))
    progress = Progress(len(todo), quiet)
    headline = (
        f"hobench: suite {suite.name}: {len(cells)} cells, {summary.skipped} already done, "
        f"{len(todo)} to run (jobs={jobs}, device={resolved}) -> {store.path}"
    )
    if not todo:
        _keep_suite(store, suite)
        progress.say(headline)
        summary.wall_s = time.perf_counter() - started
        return summary

    # Threads are the suite's, not --jobs': a float sum splits differently over 1 and 2
    # threads, so pinning them is what makes a seeded cost-budget run bit-identical.
    threads = suite.threads
    notes = []
    if jobs * threads > _cores() and executor[0] == "local":
        notes.append(
            f"hobench: note: {jobs} jobs x {threads} thread(s) > {_cores()} cores; "
            "cells will share cores (results are unaffected, times are slower)"
        )
    manifest = make_manifest(resolved, threads)  # calibrates now, before the zygote starts
    compile_folder, compile_notes = _compile_setup(todo, executor[0])
    # A CI cancel (SIGTERM) stops as cleanly as Ctrl-C; signals can only be set in the main thread.
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    with _workdir(store) as workdir:
        pool: _Pool | RayPool | None = None
        try:
            if executor[0] == "local":  # the zygote starts: its imports overlap the checks
                gpu_slots = _gpu_slots(resolved, jobs)
                pool = _Pool(suite.name, manifest, data_dir, threads, gpu_slots, workdir, resolved)
            check_budgets(todo, data_dir)  # before anything is removed or run; loads the data
            if pool is None:  # a Ray cluster is joined only once the cells are known to fit
                pool = RayPool(suite.name, manifest, data_dir, threads, resolved, executor[1])
            store.remove(rerun)
            _keep_suite(store, suite)
            progress.say(headline)
            for note in notes:
                progress.say(note)
            for note in compile_notes:
                progress.say(note, always=True)
            if compile_folder:
                _warm(pool, todo, jobs, Path(compile_folder), progress, summary)
                manifest["compile_warmup_s"] = summary.compile_s  # the records' provenance
            progress.begin()
            _drive(pool, todo, jobs, store, progress, summary)
        except KeyboardInterrupt:
            summary.interrupted = True
            # Not with --quiet: there the CLI's one closing line says it all.
            progress.say("hobench: interrupted; stopping workers")
        finally:
            progress.close()
            # Whatever ended the run, no worker outlives it; a second Ctrl-C must not skip this.
            previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
            try:
                if pool is not None:
                    pool.stop()
            finally:
                if main_thread:
                    signal.signal(signal.SIGINT, previous_int)
                    signal.signal(signal.SIGTERM, previous_term)
    summary.wall_s = time.perf_counter() - started
    return summary


def _keep_suite(store: ResultsStore, suite: Suite) -> None:
    if Path(suite.path).is_file():
        store.keep_suite(suite.path)


def _compile_setup(todo: list[Cell], executor: str) -> tuple[str | None, list[str]]:
    """The compile cache's folder for a local run whose cells compile (None: none compile, or
    they cannot here and run eager), and the lines to say about it. Sets the environment the
    zygote starts with, so it must run before the zygote does."""
    if executor != "local" or not any(compiles(cell) for cell in todo):
        return None, []
    folder, warning = compile_cache.configure()  # before inductor picks its own
    notes = [f"hobench: warning: {warning}"] if warning else []
    problem = compile_cache.compiler_problem()
    if problem:
        notes.append(
            f"hobench: cannot compile here ({problem}); every cell runs eager "
            "(install a C++ compiler, e.g. g++, to compile; compile = false says so)"
        )
        os.environ[COMPILE_ENV] = "0"  # this run's cells and their records: eager
        return None, notes
    os.environ[compile_cache.PRELOAD_ENV] = "1"  # the zygote starts the compiler once
    return folder, notes


@contextlib.contextmanager
def _workdir(store: ResultsStore) -> Iterator[Path]:
    """The workers' scratch folder, `.work/` beside the results file. Only the lock's holder
    uses it, so one left by a killed run is stale and is removed here, not left in /tmp."""
    workdir = store.path.parent / WORKDIR
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _warm(
    pool: _Pool, todo: list[Cell], jobs: int, folder: Path, progress: Progress, summary: RunSummary
) -> None:
    """Run one cell of each compiling pair not yet warm here (hobench.harness.warmup), keeping
    only its compile seconds: the cells then load compiled code, none compiling on its clock."""
    pending = pairs_to_warm(todo, folder)
    if not pending:
        return
    progress.say(
        f"hobench: compiling {len(pending)} task x strategy pair(s) before the cells, "
        f"once on this machine (cache: {folder})"
    )
    while pending or pool.running:
        while pending and len(pool.running) < jobs:
            pool.start(pending.pop(0), pool.free_slot())
        reaped = pool.reap()
        if not reaped:
            time.sleep(POLL_S)
            continue
        for worker, record in reaped:
            summary.compile_s += record["resources"].get("compile_s") or 0.0
            if record["status"] == "ok":  # a failing pair fails again in its cells, and says why
                mark_warm(worker.cell, folder)
                summary.warmed += 1


def _drive(
    pool: _Pool,
    todo: list[Cell],
    jobs: int,
    store: ResultsStore,
    progress: Progress,
    summary: RunSummary,
) -> None:
    pending = list(todo)
    while pending or pool.running:
        while pending and len(pool.running) < jobs:
            pool.start(pending.pop(0), pool.free_slot())
        reaped = pool.reap()
        if not reaped:
            progress.running(
                [(w.cell.key, w.status_path and _read_status(w.status_path)) for w in pool.running]
            )
            time.sleep(POLL_S)
            continue
        for worker, record in reaped:
            store.append(record)  # immediately: a later crash keeps this cell
            summary.records.append(record)
            (summary.ok if record["status"] == "ok" else summary.failed).append(record["cell"])
            progress.finished(record)
            if record["status"] != "ok" and os.environ.get("HOBENCH_TRACEBACK"):
                progress.say(pool.log_tail(worker), always=True)
