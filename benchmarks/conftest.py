"""Collects the engine benchmarks' timings and peak memory, and reports them against the targets.

The tests in test_engine.py record into one session-wide `EngineResults`; at the end of the run
`pytest_terminal_summary` prints a table (case, median seconds, ratio to plain, extra peak MB), the
target lines with PASS/MISS, and writes the same summary as JSON under results/local/ (copied to
results/engine-bench.json, `make readme` regenerates docs/engine.md's figures from it). On a GPU
(HOBENCH_BENCH_DEVICE=cuda) the summary records the GPU and goes to its own file,
results/local/engine-bench-cuda.json, beside the CPU one; without the GPU the session stops at
its start with one line.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_device import device_meta, device_problem
from benchmarks.engine_cases import DEVICE, RTHO_DELTA, C, D, N

# The issues' targets (ratios measured in one run on one machine).
REVERSE_TIME_MAX = 1.0  # Reverse-HG wall time / torchopt's
REVERSE_MEMORY_MAX = 0.25  # Reverse-HG extra peak memory over plain / torchopt's
FORWARD_M1_MAX = 2.5  # Forward-HG at m = 1 / plain training
RTHO_M3_MAX = 2.0  # RTHO per step at m = 3 / plain training per step
FORWARD_SLOPE_MAX = 1.5  # (t(m=10) − t(m=1)) / 9, in plain training runs
# Forward-HG memory must not grow with T: from T/5 to T it may grow by at most this fraction of
# what storing the extra states would take (what Reverse-HG does), and never less than 1 MB.
FORWARD_GROWTH_FRACTION = 0.25
FORWARD_GROWTH_FLOOR_MB = 1.0
# Rounds of one case whose slowest is this much slower than its fastest mean a busy machine.
NOISY_SPREAD = 1.25


class EngineResults:
    """What the engine benchmarks measured in this session."""

    def __init__(self) -> None:
        self.steps: int | None = None
        self.cases: list[str] = []
        self.time_s: dict[str, float] = {}  # case → median seconds
        self.range_s: dict[str, tuple[float, float]] = {}  # case → (min, max) seconds
        self.memory: dict[str, dict[str, Any]] = {}  # case → peak_memory's JSON
        self.memory_no_pin: dict[str, dict[str, Any]] = {}  # the same, threshold not pinned
        self.skipped: dict[str, str] = {}  # case → reason
        self.agreement: dict[str, dict[str, Any]] = {}  # check → rel. difference, tolerance
        self.forward_memory: dict[str, Any] = {}  # T/5 vs T for forward-m10
        self.extra_info: dict[str, dict] = {}  # case → its benchmark's extra_info
        self.interleaved: dict[str, list[float]] = {}  # case → seconds, one per round
        self.compiled: bool | None = None  # our cases ran the compiled path
        # label → [(compiled function, seconds of its first call)]: compile time, never timed
        self.compile_s: dict[str, list[tuple[str, float]]] = {}

    @contextlib.contextmanager
    def compiling(self, label: str):
        """Attribute to `label` the compiles (first calls) that happen inside the block."""
        from hobench.hypergrad.compiled import compile_times

        before = len(compile_times())
        try:
            yield
        finally:
            new = compile_times()[before:]
            if new:
                self.compile_s.setdefault(label, []).extend(new)

    def record_time(self, case: str, benchmark) -> None:
        stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
        if stats is None:
            return
        self.time_s[case] = float(stats.stats.median)
        self.range_s[case] = (float(stats.stats.min), float(stats.stats.max))
        self.extra_info[case] = benchmark.extra_info

    def record_memory(self, case: str, measured: dict[str, Any]) -> None:
        self.memory[case] = measured
        if case in self.extra_info:  # lands in the saved .benchmarks JSON too
            self.extra_info[case]["extra_peak_mb"] = measured["extra_mb"]

    # --- the summary ---

    def plain(self) -> str | None:
        """The faster plain-training loop: the honest baseline."""
        timed = {c: t for c, t in self.time_s.items() if c.startswith("plain-")}
        return min(timed, key=timed.get) if timed else None

    def extra_mb(self, case: str) -> float | None:
        return self.memory[case]["extra_mb"] if case in self.memory else None

    def complete(self) -> bool:
        """Every case was timed and measured, or skipped: a full run, fit for results/."""
        return bool(self.cases) and all(
            c in self.skipped or (c in self.time_s and c in self.memory) for c in self.cases
        )

    def time_ratio(self, case: str, base: str) -> tuple[float, str] | None:
        """t(case) / t(base): the median over the interleaved rounds of each round's ratio, with
        how it was taken; else the ratio of the pytest-benchmark medians; None if not timed."""
        a, b = self.interleaved.get(case), self.interleaved.get(base)
        t = self.time_s
        medians = f"{t[case]:.3f} s / {t[base]:.3f} s" if case in t and base in t else ""
        if a and b:
            ratios = sorted(x / y for x, y in zip(a, b, strict=True))
            how = (
                f"median of {len(ratios)} interleaved rounds' ratios "
                f"(range {ratios[0]:.2f}–{ratios[-1]:.2f})"
            )
            return statistics.median(ratios), how + (f"; medians {medians}" if medians else "")
        if medians:
            return t[case] / t[base], f"medians {medians}"
        return None

    @staticmethod
    def allowed_forward_growth_mb(trajectory_mb: float) -> float:
        return max(FORWARD_GROWTH_FLOOR_MB, FORWARD_GROWTH_FRACTION * trajectory_mb)

    def targets(self) -> list[dict[str, Any]]:
        """Each target: measured value, limit, PASS/MISS (or n/a and why), how it was computed."""
        plain, t = self.plain(), self.time_s
        out = []

        def add(name: str, limit: float | None, value: float | None, detail: str, needs=()) -> None:
            """`needs`: (case, where its measurement lives), to say which one is missing."""
            if value is None:
                why = detail or "; ".join(
                    f"{c}: {self.skipped.get(c, 'not measured')}"
                    for c, got in needs
                    if c not in got
                )
                status, detail = f"n/a ({why})", ""
            else:
                status = "PASS" if value <= limit else "MISS"
            out.append(
                {"target": name, "value": value, "limit": limit, "status": status, "detail": detail}
            )

        # Reverse-HG wall time vs torchopt's.
        value, detail = None, ""
        if ratio := self.time_ratio("reverse", "torchopt"):
            value, detail = ratio
            if "reverse-eager" in t and "torchopt" in t:
                detail += f"; eager (medians): {t['reverse-eager'] / t['torchopt']:.2f}"
        add(
            "Reverse-HG time / torchopt",
            REVERSE_TIME_MAX,
            value,
            detail,
            [("reverse", t), ("torchopt", t)],
        )

        # Reverse-HG extra peak memory over plain training vs torchopt's, with glibc's mmap
        # threshold pinned (steady figures) and as users run (the threshold moves).
        for name, memory in (
            ("Reverse-HG extra memory / torchopt", self.memory),
            ("Reverse-HG extra memory / torchopt, no malloc pin", self.memory_no_pin),
        ):
            if memory is self.memory_no_pin and not memory:
                continue  # an older run, or the no-pin cases were not selected

            def mem(case: str, memory=memory) -> float | None:
                return memory[case]["extra_mb"] if case in memory else None

            value, detail = None, ""
            if plain and None not in (mem("reverse"), mem("torchopt"), mem(plain)):
                base = mem(plain)
                ours, theirs = max(mem("reverse") - base, 0.0), max(mem("torchopt") - base, 0.0)
                value = ours / theirs if theirs > 0 else None
                detail = "" if value is not None else "torchopt added no memory over plain"
                detail = detail or (
                    f"({mem('reverse'):.1f} − {base:.1f}) / ({mem('torchopt'):.1f} − {base:.1f}) MB"
                    f", over {plain}"
                )
            add(
                name,
                REVERSE_MEMORY_MAX,
                value,
                detail,
                [("reverse", memory), ("torchopt", memory)],
            )

        # Forward-HG at m = 1, and RTHO per step at m = 3, in plain training runs.
        for name, case, limit in (
            ("Forward-HG m = 1 / plain", "forward-m1", FORWARD_M1_MAX),
            ("RTHO per step, m = 3 / plain", "rtho-m3", RTHO_M3_MAX),
        ):
            value, detail = None, ""
            if plain and (ratio := self.time_ratio(case, plain)):
                value, detail = ratio
                if f"{case}-eager" in t:
                    detail += f"; eager (medians): {t[f'{case}-eager'] / t[plain]:.2f}"
                if case == "rtho-m3":
                    detail += f"; T = {self.steps} steps each, a hypergradient every {RTHO_DELTA}"
            add(name, limit, value, detail, [(case, t)])

        # Forward-HG linear in m, slope at most 1.5 plain training runs per hyperparameter.
        value, detail = None, ""
        if plain and "forward-m1" in t and "forward-m10" in t:
            value = (t["forward-m10"] - t["forward-m1"]) / 9 / t[plain]
            detail = f"(({t['forward-m10']:.3f} − {t['forward-m1']:.3f}) s / 9) / {t[plain]:.3f} s"
            if "forward-m3" in t:
                detail += f"; m=3: {t['forward-m3']:.3f} s"
        add(
            "Forward-HG slope per m / plain",
            FORWARD_SLOPE_MAX,
            value,
            detail,
            [("forward-m1", t), ("forward-m10", t)],
        )

        # Forward-HG memory flat in T.
        fm, value, detail, limit = self.forward_memory, None, "", None
        if fm:
            value, limit = fm["long_mb"] - fm["short_mb"], fm["allowed_mb"]
            detail = (
                f"forward-m10 extra {fm['short_mb']:.2f} MB at T={fm['short_steps']}, "
                f"{fm['long_mb']:.2f} MB at T={fm['long_steps']}; storing the "
                f"{fm['long_steps'] - fm['short_steps']} extra states would take "
                f"{fm['trajectory_mb']:.1f} MB"
            )
        add(
            "Forward-HG memory growth T/5 → T, MB",
            limit,
            value,
            detail,
            [("forward-m10 at T/5", {})],
        )
        return out

    def summary(self) -> dict[str, Any]:
        plain = self.plain()
        rows = []
        for case in self.cases:
            t, mb = self.time_s.get(case), self.extra_mb(case)
            lo, hi = self.range_s.get(case, (None, None))
            rows.append(
                {
                    "case": case,
                    "median_s": t,
                    "min_s": lo,
                    "max_s": hi,
                    "rounds": self.extra_info.get(case, {}).get("rounds"),
                    "noisy": bool(lo and hi / lo > NOISY_SPREAD),
                    "ratio_to_plain": t / self.time_s[plain] if t and plain else None,
                    "extra_peak_mb": mb,
                    "cuda_peak_mb": self.memory.get(case, {}).get("cuda_peak_mb"),
                    "skipped": self.skipped.get(case),
                }
            )
        return {
            "meta": _meta(self.steps),
            "plain": plain,
            "plain_times_s": {c: t for c, t in self.time_s.items() if c.startswith("plain-")},
            "cases": rows,
            "agreement": self.agreement,
            "forward_memory": self.forward_memory,
            "memory_no_pin": {c: m["extra_mb"] for c, m in self.memory_no_pin.items()},
            "targets": self.targets(),
            "complete": self.complete(),
            "noisy_cases": [r["case"] for r in rows if r["noisy"]],
            "interleaved_s": self.interleaved,
            "compiled": self.compiled,
            "compile_failure": _compile_failure(),
            "compile_s": {
                label: [{"function": f, "seconds": sec} for f, sec in entries]
                for label, entries in self.compile_s.items()
            },
        }


def _compile_failure() -> str | None:
    from hobench.hypergrad.compiled import compile_failure

    return compile_failure()


RESULTS = EngineResults()
# The machine's load average (1, 5, 15 min) when the session started: the numbers are only as
# good as the machine was quiet, so the summary shows it beside the load at the end.
LOAD_AT_START: tuple[float, float, float] | None = None


def pytest_sessionstart(session) -> None:
    global LOAD_AT_START
    if problem := device_problem(DEVICE):  # one line (pytest: "ERROR: ...", exit 4), no tracebacks
        raise pytest.UsageError(problem)
    LOAD_AT_START = _loadavg()


def _loadavg() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


@pytest.fixture(scope="session")
def engine_results() -> EngineResults:
    return RESULTS


def _meta(steps: int | None) -> dict[str, Any]:
    import torch

    versions: dict[str, str | None] = {"torch": torch.__version__}
    for dist in ("torchopt", "higher", "pytest-benchmark"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "shape": f"hyper-cleaning: {N} examples × {D} features × {C} classes, full-batch GD, "
        "float32",
        "steps": steps,
        **device_meta(DEVICE),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "loadavg_start": LOAD_AT_START,
        "loadavg_end": _loadavg(),
        "versions": versions,
        "git_commit": commit,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _fmt(value: float | None, width: int, decimals: int) -> str:
    return f"{'—':>{width}}" if value is None else f"{value:{width}.{decimals}f}"


def _load(avg: tuple[float, float, float] | None) -> str:
    return "?" if avg is None else f"{avg[0]:.2f}"


def _table(summary: dict[str, Any]) -> list[str]:
    meta = summary["meta"]
    where = f"CPU ({meta['processor']})"
    if meta.get("gpu"):
        where = (
            f"{meta['device']} ({meta['gpu']}, CUDA {meta['cuda']}; host CPU {meta['processor']})"
        )
    lines = [
        f"{meta['shape']}, T = {meta['steps']}, {where}, "
        f"{meta['torch_threads']} torch threads, torch {meta['versions']['torch']}",
        f"load average (1 min) {_load(meta['loadavg_start'])} before the run, "
        f"{_load(meta['loadavg_end'])} at its end (its own threads included), "
        f"on {meta['cpu_count']} cores",
        f"extra peak MB: {meta['peak_memory']}",
        "",
        f"{'case':<16} {'median s':>9} {'min s':>8} {'max s':>8} {'× plain':>8} "
        f"{'extra peak MB':>14}",
    ]
    for row in summary["cases"]:
        if row["skipped"]:
            lines.append(f"{row['case']:<16} skipped: {row['skipped']}")
            continue
        lines.append(
            f"{row['case']:<16} {_fmt(row['median_s'], 9, 3)} {_fmt(row['min_s'], 8, 3)} "
            f"{_fmt(row['max_s'], 8, 3)} {_fmt(row['ratio_to_plain'], 8, 2)} "
            f"{_fmt(row['extra_peak_mb'], 14, 1)}" + (" *" if row["noisy"] else "")
        )
    noisy = [row["case"] for row in summary["cases"] if row["noisy"]]
    if noisy:
        lines.append(
            f"* rounds differ by more than {NOISY_SPREAD - 1:.0%} (max/min): the machine was "
            "busy; the times and ratios of these cases are not to be trusted"
        )
    plain, times = summary["plain"], summary["plain_times_s"]
    if plain:
        both = ", ".join(f"{c} {t:.3f} s" for c, t in sorted(times.items()))
        lines += ["", f"plain = {plain} (the faster of {both})"]
    for check, a in summary["agreement"].items():
        tol = "shown, not checked" if a["tol"] is None else f"tolerance {a['tol']:.0e}"
        lines.append(f"agreement {check}: relative difference {a['rel_diff']:.1e} ({tol})")
    lines.append("")
    if summary["compiled"]:
        lines.append(
            "our cases ran the compiled path (the -eager cases the eager one); compile time, "
            "the first call of each compiled function, is not in the timings:"
        )
        for label, entries in summary["compile_s"].items():
            parts = ", ".join(f"{e['function']} {e['seconds']:.1f}" for e in entries)
            total = sum(e["seconds"] for e in entries)
            lines.append(f"  {label}: {total:.1f} s ({parts})")
    else:
        lines.append("our cases ran the eager path (HOBENCH_COMPILE=0)")
    if summary["compile_failure"]:
        lines.append(f"compiling failed, eager from then on: {summary['compile_failure']}")
    lines += ["", "targets:"]
    for tg in summary["targets"]:
        limit = "" if tg["limit"] is None else f"<= {tg['limit']:.3g}"
        if tg["value"] is None:
            lines.append(f"  {tg['target']:<38} {tg['status']}")
            continue
        lines.append(f"  {tg['target']:<38} {tg['value']:8.3f}  {limit:<8} {tg['status']}")
        if tg["detail"]:
            lines.append(f"      {tg['detail']}")
    return lines


def results_path(root: Path, steps: int | None, device: str = "cpu") -> Path:
    """results/local/engine-bench.json for the default T = 500 on the CPU; other T and a GPU get
    their own file (engine-bench-T50.json, engine-bench-cuda.json, engine-bench-cuda-T50.json),
    so a quick run or a GPU run never overwrites a full one. Under results/local/, like a user's
    suite runs: the committed results/engine-bench.json, whose figures docs/engine.md quotes, is
    replaced only by copying a run there on purpose."""
    stem = "engine-bench" if device == "cpu" else "engine-bench-cuda"
    name = f"{stem}.json" if steps == 500 else f"{stem}-T{steps}.json"
    return root / "results" / "local" / name


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After pytest-benchmark's table, even when its --benchmark-compare-fail check raises."""
    try:
        return (yield)
    finally:
        report_engine_results(terminalreporter, config)


def report_engine_results(terminalreporter, config) -> None:
    results = RESULTS
    if not results.time_s and not results.memory:
        return
    summary = results.summary()
    terminalreporter.write_sep("=", "engine benchmark summary")
    for line in _table(summary):
        terminalreporter.write_line(line)
    path = results_path(config.rootpath, results.steps, DEVICE)
    if summary["complete"]:
        write_json_atomically(path, summary)
        terminalreporter.write_line(f"\nsummary written to {path.relative_to(config.rootpath)}")
    else:
        terminalreporter.write_line(f"\npartial run: {path.name} not written")
