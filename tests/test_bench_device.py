"""The engine benchmarks' device setting (benchmarks/bench_device.py), on a machine without a GPU:
the check that names a missing GPU, the wait that makes GPU timings honest, and the cases'
device placement, checked on PyTorch's `meta` device (which, like CUDA, refuses CPU operands)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import bench_device
from benchmarks.bench_device import DEVICE_ENV, device_problem, requested_device, synced
from benchmarks.conftest import results_path
from benchmarks.engine_cases import (
    CASES,
    HYPERGRADIENTS,
    D,
    N,
    build,
    forward_problem,
    make_data,
    peer_available,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("value", "device"), [(None, "cpu"), ("  ", "cpu"), ("cuda:1", "cuda:1")])
def test_requested_device_defaults_to_cpu(monkeypatch, value, device):
    if value is None:
        monkeypatch.delenv(DEVICE_ENV, raising=False)
    else:
        monkeypatch.setenv(DEVICE_ENV, value)
    assert requested_device() == device


def test_cpu_needs_nothing():
    assert device_problem("cpu") is None


def test_a_device_that_is_not_one_is_named():
    assert device_problem("gpu") == f"{DEVICE_ENV}='gpu' is not a device: use cpu, cuda or cuda:N"


def test_cuda_without_a_gpu_is_one_line_naming_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    problem = device_problem("cuda")
    assert problem is not None and "\n" not in problem
    assert "sees no CUDA GPU" in problem and f"unset {DEVICE_ENV}" in problem


def test_cuda_index_beyond_the_visible_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_problem("cuda:0") is None
    assert "only 1 GPU(s) are visible: use cuda:0 to cuda:0" in device_problem("cuda:1")


def test_on_cpu_a_case_runs_unwrapped():
    def run():
        return 1

    assert synced(run, "cpu") is run
    assert synced(run, torch.device("cpu")) is run


def test_on_cuda_a_case_returns_after_the_device_is_done(monkeypatch):
    events = []
    monkeypatch.setattr(
        torch.cuda, "synchronize", lambda device=None: events.append(("sync", device))
    )

    def run():
        events.append("run")
        return 42

    timed = synced(run, "cuda:0")
    assert events == []
    assert timed() == 42
    assert events == ["run", ("sync", "cuda:0")]


def test_cpu_meta_records_no_gpu():
    meta = bench_device.device_meta("cpu")
    assert meta["device"] == "cpu" and meta["gpu"] is None and meta["cuda"] is None
    assert "resident set size" in meta["peak_memory"]


@pytest.mark.parametrize(
    ("steps", "device", "name"),
    [
        (500, "cpu", "engine-bench.json"),
        (50, "cpu", "engine-bench-T50.json"),
        (500, "cuda", "engine-bench-cuda.json"),
        (50, "cuda:1", "engine-bench-cuda-T50.json"),
    ],
)
def test_a_gpu_summary_never_overwrites_the_cpu_one(steps, device, name):
    assert results_path(Path("/r"), steps, device) == Path("/r/results/local") / name


def test_data_is_drawn_on_the_cpu_then_moved():
    """On the CPU the draw is the one the benchmarks always made; other devices get a copy."""
    cpu, meta = make_data(device="cpu"), make_data(device="meta")
    assert {k: v.device.type for k, v in cpu.items()} == dict.fromkeys(cpu, "cpu")
    assert {k: v.device.type for k, v in meta.items()} == dict.fromkeys(cpu, "meta")
    assert torch.equal(cpu["X"], torch.rand(N, D, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("m", [1, 3, 10])
def test_forward_problem_hyperparameters_on_the_data_device(m):
    _, hp, _, batch = forward_problem(make_data(device="meta"), m)
    assert {x.device.type for x in [*hp.values(), *batch]} == {"meta"}


def test_every_case_keeps_to_the_data_device():
    """Each case (the compiled ones through their eager twins: same builders, compile=False; the
    peers' models too) runs two steps on meta tensors; any tensor made on the CPU inside a case
    would raise here, as it would on a GPU."""
    data = make_data(device="meta")
    for case in [c for c in CASES if c not in HYPERGRADIENTS]:
        if peer_available(case) is not None and case in ("torchopt", "higher"):
            continue
        out = build(case, data, steps=2)()
        devices = {x.device.type for x in torch.utils._pytree.tree_leaves(out)}
        assert devices == {"meta"}, case


def test_benchmarks_without_a_gpu_stop_with_one_line():
    """`HOBENCH_BENCH_DEVICE=cuda pytest benchmarks` where no GPU is visible: pytest's one usage
    line, before any case is collected or built."""
    env = {**os.environ, DEVICE_ENV: "cuda", "CUDA_VISIBLE_DEVICES": "", "HOBENCH_BENCH_T": "5"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a net only: CI machines run at load 6-10
        check=False,
    )
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ERROR: {DEVICE_ENV}=cuda but torch")
