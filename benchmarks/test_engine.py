"""Engine benchmarks on the hyper-cleaning shape (run by `make bench-engine`, not `make test`).

Order matters and is the file's order: first the hypergradients are checked to agree (ours,
torchopt's, higher's; forward vs reverse; ours and torchopt's against a float64 reference), then
every case is timed with pytest-benchmark, then the time targets' cases again in interleaved
rounds (the targets' ratios are taken within rounds), then each case's extra peak memory is
measured in a fresh process (one at a time), and Forward-HG's at T/5 vs T. conftest.py
collects it all and prints the summary with the targets. The compiled functions are compiled
in the first call of each (in the checks, or in a case's warm-up call with T = 1), which is
timed apart: the timed rounds never include it. The other cases (plain loops, peers, eager) get
no warm-up: nothing in them is compiled, and the median of three rounds absorbs a slow first
one. The references that no target divides by (the eager cases, higher) are timed once.

Everything runs on HOBENCH_BENCH_DEVICE (default cpu), the checks included: the float64
reference is computed on the same device. On a GPU every case's callable waits for the device
before it returns (engine_cases.build), so each timed call, in pytest-benchmark's rounds and in
the interleaved ones, includes the work and not only its launch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.engine_cases import (
    CASES,
    CLEANING,
    EAGER,
    HYPERGRADIENTS,
    PEERS,
    STEPS,
    build,
    device_of,
    forward_problem,
    fresh_params,
    make_data,
    peer_available,
    validation_loss,
)
from benchmarks.peak_memory import NO_PIN_ENV
from hobench.hypergrad import forward, reverse
from hobench.hypergrad.compiled import use_compiled

ROOT = Path(__file__).resolve().parent.parent
# float32 over T steps: the λ-gradients must agree to this relative norm of their difference.
REL_TOL = 1e-4
# Against the float64 reference, our float32 λ-gradient must be this close (torchopt's error is
# shown beside it; compiled without the addmm split ours drifted to 6.9e-5).
FLOAT64_TOL = 1e-5
# Forward vs reverse on the momentum problem: a shorter horizon keeps the check cheap.
FORWARD_CHECK_STEPS = min(STEPS, 100)
MEMORY_TIMEOUT_S = 1800
# The memory target's cases, measured a second time without the mmap-threshold pin.
UNPINNED = ("plain-analytic", "reverse", "torchopt")


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    return make_data()


@pytest.fixture(scope="module", autouse=True)
def _register_cases(engine_results) -> None:
    engine_results.steps = STEPS
    engine_results.cases = list(CASES)
    engine_results.compiled = use_compiled(True)


def skip_missing_peer(case: str, engine_results) -> None:
    reason = peer_available(case) if case in PEERS else None
    if reason:
        engine_results.skipped[case] = reason
        pytest.skip(reason)


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖."""
    return ((a - b).norm() / b.norm()).item()


# --- correctness (not timed) ---


@pytest.fixture(scope="module")
def reverse_lam_grad(data, engine_results) -> torch.Tensor:
    with engine_results.compiling("reverse"):
        return build("reverse", data)()


@pytest.fixture(scope="module")
def torchopt_lam_grad(data, engine_results) -> torch.Tensor:
    skip_missing_peer("torchopt", engine_results)
    return build("torchopt", data)()


@pytest.mark.parametrize("peer", PEERS)
def test_peer_agrees_with_reverse(peer, data, reverse_lam_grad, engine_results, request):
    """torchopt's and higher's unrolled λ-gradient equals our Reverse-HG, at the benchmark's T."""
    skip_missing_peer(peer, engine_results)
    theirs = (
        build(peer, data)() if peer != "torchopt" else request.getfixturevalue("torchopt_lam_grad")
    )
    assert theirs.shape == reverse_lam_grad.shape
    diff = rel_diff(theirs, reverse_lam_grad)
    engine_results.agreement[f"{peer} vs reverse (λ, T={STEPS})"] = {
        "rel_diff": diff,
        "tol": REL_TOL,
    }
    assert diff <= REL_TOL


def test_accuracy_against_float64(data, reverse_lam_grad, engine_results, request):
    """Ours (the benchmarked path) and torchopt's float32 λ-gradients against the same
    hypergradient computed in float64 (eager Reverse-HG, on the benchmark's device)."""
    data64 = {k: v.double() if v.is_floating_point() else v for k, v in data.items()}
    hp = {"lam": data64["lam"]}
    batch = (data64["X"], data64["y"])
    s0 = {"w": tuple(p.double() for p in fresh_params(device_of(data)))}
    outer = validation_loss(data64)
    reference = reverse(CLEANING, s0, hp, STEPS, lambda t: batch, outer, compile=False).grad["lam"]
    ours = rel_diff(reverse_lam_grad.double(), reference)
    check = f"reverse vs float64 reference (λ, T={STEPS})"
    engine_results.agreement[check] = {"rel_diff": ours, "tol": FLOAT64_TOL}
    if peer_available("torchopt") is None:
        theirs = rel_diff(request.getfixturevalue("torchopt_lam_grad").double(), reference)
        engine_results.agreement[f"torchopt vs float64 reference (λ, T={STEPS})"] = {
            "rel_diff": theirs,
            "tol": None,
        }
    assert ours <= FLOAT64_TOL


@pytest.mark.parametrize("m", [1, 10])
def test_forward_agrees_with_reverse(m, data, engine_results):
    """Forward-HG and Reverse-HG give the same gradient on the benchmarked momentum problem."""
    dyn, hp, outer, batch = forward_problem(data, m)
    args = (hp, FORWARD_CHECK_STEPS, lambda t: batch, outer)
    with engine_results.compiling(f"forward vs reverse check, m={m}"):
        fwd = forward(dyn, dyn.init(fresh_params(device_of(data)), hp), *args, compile=True).grad
        rev = reverse(dyn, dyn.init(fresh_params(device_of(data)), hp), *args, compile=True).grad
    flat_f = torch.cat([fwd[k].reshape(-1) for k in hp])
    flat_r = torch.cat([rev[k].reshape(-1) for k in hp])
    diff = rel_diff(flat_f, flat_r)
    check = f"forward vs reverse (momentum, m={m}, T={FORWARD_CHECK_STEPS})"
    engine_results.agreement[check] = {"rel_diff": diff, "tol": REL_TOL}
    assert diff <= REL_TOL


# --- wall time ---


def warm_up(case: str, data, engine_results) -> None:
    """The case once with T = 1: it calls every function the case compiles (RTHO's hypergradient
    included: it is taken at the last step), with the same shapes, so they compile here and not
    in a timed round, without a whole untimed run of T steps."""
    with engine_results.compiling(case):
        build(case, data, steps=1)()


# Rounds per case. The eager cases and higher are references (what compiling buys, in the
# targets' details; a second peer beside torchopt) and are timed once: three rounds of them would
# add two minutes to `make bench`.
ROUNDS = 3
REFERENCE_ROUNDS = 1
REFERENCES = [*EAGER, "higher"]


@pytest.mark.parametrize("case", CASES)
def test_time(case, data, benchmark, engine_results):
    skip_missing_peer(case, engine_results)
    benchmark.group = f"engine T={STEPS}"
    rounds = REFERENCE_ROUNDS if case in REFERENCES else ROUNDS
    benchmark.extra_info.update(case=case, steps=STEPS, rounds=rounds)
    run = build(case, data)
    if case in HYPERGRADIENTS:  # the compiled cases' first call compiles: a warm-up, not timed
        warm_up(case, data, engine_results)
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    engine_results.record_time(case, benchmark)


# The time targets' cases again, in interleaved rounds: each round runs every case once, in an
# order rotated from round to round, and a target's ratio is taken within each round, so load
# that comes and goes on a shared machine falls on both sides of it.
# plain-analytic is the plain baseline the targets divide by (the faster plain loop; if
# plain-autograd were faster, the targets would fall back to the separately timed medians).
INTERLEAVED = ["plain-analytic", "reverse", "torchopt", "forward-m1", "rtho-m3"]
INTERLEAVED_ROUNDS = 5


def test_time_interleaved(data, engine_results):
    cases = [c for c in INTERLEAVED if c not in engine_results.skipped]
    runs = {case: build(case, data) for case in cases}
    for case in runs:
        if case not in engine_results.time_s:  # not warmed up (compiled) by test_time
            warm_up(case, data, engine_results)
    times: dict[str, list[float]] = {case: [] for case in cases}
    for r in range(INTERLEAVED_ROUNDS):
        for case in cases[r % len(cases) :] + cases[: r % len(cases)]:
            start = time.perf_counter()
            runs[case]()  # on a GPU it returns once the device is done (build's callables)
            times[case].append(time.perf_counter() - start)
    engine_results.interleaved = times


# --- peak memory, each in a fresh process ---


def peak_memory(case: str, steps: int, pin: str = "pinned") -> dict:
    """`python -m benchmarks.peak_memory CASE` with T = steps, glibc's mmap threshold pinned or
    ("no-pin") left to move; its JSON line, or the failure."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.peak_memory", case],
        cwd=ROOT,
        env={**os.environ, "HOBENCH_BENCH_T": str(steps), NO_PIN_ENV: str(int(pin == "no-pin"))},
        capture_output=True,
        text=True,
        timeout=MEMORY_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        failure = f"peak_memory {case} (T={steps}) exited {proc.returncode}:\n{proc.stderr}"
        return {"failed": failure}
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def peak_memories(engine_results) -> dict[tuple[str, int], dict]:
    """Every case's peak memory at T, and forward-m10's at T/5, keyed (case, steps). One process
    at a time: two, each with torch's threads, on a 2-core machine took twice as long in all
    (305 s against ~150 s here) as their threads' spin-waits fought for the cores."""
    runs = [(c, STEPS) for c in CASES if c not in PEERS or peer_available(c) is None]
    runs.append(("forward-m10", max(1, STEPS // 5)))
    # The memory target again as users run (glibc's threshold moves with what was freed).
    runs += [(c, STEPS, "no-pin") for c in UNPINNED if (c, STEPS) in runs]
    return {run: peak_memory(*run) for run in runs}


def measured_memory(peak_memories, case: str, steps: int) -> dict:
    measured = peak_memories[(case, steps)]
    if "failed" in measured:
        pytest.fail(measured["failed"])
    return measured


@pytest.mark.parametrize("case", CASES)
def test_peak_memory(case, peak_memories, engine_results):
    skip_missing_peer(case, engine_results)
    measured = measured_memory(peak_memories, case, STEPS)
    assert measured["case"] == case
    engine_results.record_memory(case, measured)


@pytest.mark.parametrize("case", UNPINNED)
def test_peak_memory_without_the_malloc_pin(case, peak_memories, engine_results):
    skip_missing_peer(case, engine_results)
    measured = peak_memories.get((case, STEPS, "no-pin"))
    if measured is None or "failed" in measured:
        pytest.fail((measured or {}).get("failed", f"{case}: not measured"))
    assert measured["case"] == case and not measured["pinned"]
    engine_results.memory_no_pin[case] = measured


def test_forward_memory_does_not_grow_with_T(data, peak_memories, engine_results):
    """Forward-HG (m = 10) stores no trajectory: from T/5 to T steps its extra peak memory grows
    by much less than storing the extra states would take."""
    short = max(1, STEPS // 5)
    long = measured_memory(peak_memories, "forward-m10", STEPS)
    at_short = measured_memory(peak_memories, "forward-m10", short)
    dyn, hp, _, _ = forward_problem(data, 10)
    state_bytes = sum(
        x.numel() * x.element_size() for x in _leaves(dyn.init(fresh_params(device_of(data)), hp))
    )
    trajectory_mb = (STEPS - short) * state_bytes / 2**20
    allowed = engine_results.allowed_forward_growth_mb(trajectory_mb)
    engine_results.forward_memory = {
        "case": "forward-m10",
        "short_steps": short,
        "short_mb": at_short["extra_mb"],
        "long_steps": STEPS,
        "long_mb": long["extra_mb"],
        "trajectory_mb": trajectory_mb,
        "allowed_mb": allowed,
    }
    assert long["extra_mb"] - at_short["extra_mb"] <= allowed


def _leaves(tree) -> list[torch.Tensor]:
    return torch.utils._pytree.tree_leaves(tree)
