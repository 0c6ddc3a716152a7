"""Module cases of the engine benchmark (`make bench-engine` runs them after the others).

A residual CNN with BatchNorm (hobench.tasks.models.ResNet: 3 stages, width 16) on the embedded
MNIST digits, minibatches of 128 drawn by a seeded generator, T momentum-SGD steps (η = 0.05,
μ = 0.9); the hyperparameters λ are one weight decay per convolution or linear layer (m = 10).
The validation loss E is the cross-entropy of 512 validation digits with the network in train
mode (batch statistics): torchopt updates BatchNorm's running statistics in place, outside its
graph, so with eval-mode E its hypergradient would miss their dependence on λ, and the two
would not be the same number.

First checked: our eager Reverse-HG ∂E/∂λ equals torchopt MetaSGD's on the same module, weights
and batches (the same float32 arithmetic); each float32 answer (compiled, eager, torchopt) is
also printed against a float64 Reverse-HG — in float32 these weight-decay hypergradients lose
digits to cancellation, so the compiled path's own rounding can differ from both by more than
their difference. Then timed in interleaved rounds (each round runs every case once, order
rotated; a ratio is taken within each round, so load that comes and goes falls on both sides):
- `plain-ordinary`: `module.train(); loss.backward(); torch.optim.SGD.step()`, T times;
- `plain-ours`: our functional step (descend_module over the module's parameters and buffers);
- `reverse`: our Reverse-HG, compiled (the engine's default) after a warm-up call with T = 1;
- `reverse-eager`: the same on the eager path;
- `torchopt`: MetaSGD's unrolled graph, then one backward.
Then each case's extra peak memory in a fresh process (benchmarks.peak_memory's method: RSS
with glibc's mmap threshold pinned, and without the pin). Targets: plain-ours ≤ 1.2× plain-ordinary,
reverse ≤ 1.0× torchopt, reverse's extra memory ≤ 0.25× torchopt's — printed met or not.

Usage: python -m benchmarks.module_engine [--steps T] [--rounds R] [--out FILE]
       python -m benchmarks.module_engine --memory CASE [--steps T] [--no-pin]   (one JSON line)
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from benchmarks.peak_memory import measure, pin_mmap_threshold
from hobench.data import load_mnist
from hobench.hypergrad import reverse
from hobench.hypergrad.dynamics import descend_module, momentum_rule
from hobench.hypergrad.module import FunctionalModel
from hobench.tasks.models import ResNet
from hobench.tasks.module import weight_decay_groups

ROOT = Path(__file__).resolve().parent.parent
BATCH, VALIDATION, LR, MU, DECAY = 128, 512, 0.05, 0.9, 1e-3
CASES = ["plain-ordinary", "plain-ours", "reverse", "reverse-eager", "torchopt"]
TARGETS = [  # (case, divided by, at most)
    ("plain-ours", "plain-ordinary", 1.2),
    ("reverse", "torchopt", 1.0),
]
MEMORY_TARGET = ("reverse", "torchopt", 0.25)


class Problem:
    """The module, data, batches and λ every case shares."""

    def __init__(self, steps: int, dtype: torch.dtype = torch.float32) -> None:
        self.steps, self.dtype = steps, dtype
        X, y = load_mnist("embedded")
        self.X = torch.as_tensor(X, dtype=dtype).reshape(-1, 1, 28, 28)
        self.y = torch.as_tensor(y)
        g = torch.Generator().manual_seed(0)
        order = torch.randperm(len(y), generator=g)
        self.val = order[:VALIDATION]
        self.batches = [
            order[VALIDATION:][torch.randperm(len(y) - VALIDATION, generator=g)[:BATCH]]
            for _ in range(steps)
        ]
        torch.manual_seed(0)
        self.module = ResNet(1, 10, 28, width=16, stages=3).to(dtype)
        self.groups = list(weight_decay_groups(self.module, "per-layer").values())
        self.wd = torch.full((len(self.groups),), DECAY, dtype=dtype)

    def decay(self, named: dict[str, torch.Tensor], wd: torch.Tensor) -> torch.Tensor:
        return sum(
            (0.5 * wd[g] * named[name] ** 2).sum()
            for g, names in enumerate(self.groups)
            for name in names
        )


def ours(problem: Problem):
    net = FunctionalModel(problem.module, problem.dtype, torch.device("cpu"))

    def loss(model, hp, idx):
        out, buffers = net.train_forward(model, problem.X[idx])
        ce = F.cross_entropy(out, problem.y[idx])
        return ce + problem.decay(model["params"], hp["wd"]), buffers

    def outer(model, hp):
        out, _ = net.train_forward(model, problem.X[problem.val])
        return F.cross_entropy(out, problem.y[problem.val])

    return net, descend_module(loss, momentum_rule(LR, MU)), outer


def build(name: str, problem: Problem):
    """A zero-argument callable doing case `name`'s whole job once."""
    T, batches = problem.steps, problem.batches
    if name == "plain-ordinary":

        def run():
            module = copy.deepcopy(problem.module).train()
            opt = torch.optim.SGD(module.parameters(), lr=LR, momentum=MU)
            named = dict(module.named_parameters())
            for idx in batches:
                opt.zero_grad()
                ce = F.cross_entropy(module(problem.X[idx]), problem.y[idx])
                (ce + problem.decay(named, problem.wd)).backward()
                opt.step()
            return named

        return run
    if name == "torchopt":
        import torchopt

        def run():
            module = copy.deepcopy(problem.module).train()
            wd = problem.wd.clone().requires_grad_()
            opt = torchopt.MetaSGD(module, lr=LR, momentum=MU)
            for idx in batches:
                named = dict(module.named_parameters())
                ce = F.cross_entropy(module(problem.X[idx]), problem.y[idx])
                opt.step(ce + problem.decay(named, wd))
            outer = F.cross_entropy(module(problem.X[problem.val]), problem.y[problem.val])
            return torch.autograd.grad(outer, wd)[0]

        return run
    net, dynamics, outer = ours(problem)
    hp = {"wd": problem.wd}
    if name == "plain-ours":

        def run():
            state = dynamics.init(net.initial(), hp)
            with torch.no_grad():
                for idx in batches:
                    state = dynamics.step(state, hp, idx)
            return state

        return run
    compiled = name == "reverse"

    def run(steps: int = T):
        s0 = dynamics.init(net.initial(), hp)
        hg = reverse(dynamics, s0, hp, steps, lambda t: batches[t - 1], outer, compile=compiled)
        return hg.grad["wd"]

    return run


def interleaved(problem: Problem, rounds: int) -> dict[str, list[float]]:
    runs = {name: build(name, problem) for name in CASES}
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for r in range(rounds):
        order = CASES[r % len(CASES) :] + CASES[: r % len(CASES)]
        for name in order:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in CASES))
    return times


def memory(case: str, steps: int, pin: bool) -> dict:
    """The case's extra peak RSS in this (fresh) process, after a warm-up call with T = 1."""
    pinned = pin_mmap_threshold() if pin else False
    build(case, Problem(1))()
    result = measure(build(case, Problem(steps)))
    return {"case": case, "pinned": pinned, **result}


def memory_in_subprocess(case: str, steps: int, pin: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks.module_engine", "--memory", case]
    command += ["--steps", str(steps)] + ([] if pin else ["--no-pin"])
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "results" / "local" / "engine-module.json"))
    args = parser.parse_args()
    if args.memory:
        print(json.dumps(memory(args.memory, args.steps, not args.no_pin)))
        return

    problem = Problem(args.steps)
    compiled = build("reverse", problem)
    compile_start = time.perf_counter()
    compiled(1)  # compiles the step and the pullback: timed apart
    compile_s = time.perf_counter() - compile_start
    grads = {name: build(name, problem)() for name in ("reverse-eager", "torchopt")}
    grads["reverse"] = compiled()
    reference = build("reverse-eager", Problem(args.steps, torch.float64))()
    agreement = _rel(grads["reverse-eager"], grads["torchopt"])
    errors = {name: _rel(g.double(), reference) for name, g in grads.items()}
    print(
        f"∂E/∂λ (m = {len(reference)}): eager Reverse-HG vs torchopt {agreement:.2e} (the same "
        "arithmetic); each against float64: "
        + ", ".join(f"{name} {error:.2e}" for name, error in errors.items())
    )
    if agreement > 1e-4:
        raise SystemExit("the hypergradients differ: nothing is timed")

    times = interleaved(problem, args.rounds)
    rows = []
    for case, base, limit in TARGETS:
        ratios = [a / b for a, b in zip(times[case], times[base], strict=True)]
        rows.append(_target_row(f"time {case} / {base}", ratios, limit))
    peaks = {
        (case, pin): memory_in_subprocess(case, args.steps, pin)["extra_mb"]
        for case in ("reverse", "torchopt")
        for pin in (True, False)
    }
    for pin in (True, False):
        ratio = peaks[("reverse", pin)] / max(peaks[("torchopt", pin)], 1e-9)
        name = f"extra memory reverse / torchopt ({'malloc pinned' if pin else 'no pin'})"
        rows.append(_target_row(name, [ratio], MEMORY_TARGET[2]))
    table = pd.DataFrame(rows).set_index("target")
    medians = pd.Series({c: statistics.median(v) for c, v in times.items()}, name="median s")
    print(
        f"\nModule cases: ResNet (3 stages, width 16), batch {BATCH}, T = {args.steps}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(medians.to_string(float_format="%.3f"))
    print(table.to_string(float_format="%.3f"))
    summary = {
        "steps": args.steps,
        "batch": BATCH,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "agreement": agreement,
        "error_vs_float64": errors,
        "compile_s": compile_s,
        "times_s": times,
        "extra_mb": {f"{c}{'' if p else '-nopin'}": v for (c, p), v in peaks.items()},
        "targets": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"summary: {args.out}")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _target_row(name: str, ratios: list[float], limit: float) -> dict:
    median = statistics.median(ratios)
    return {
        "target": name,
        "median": median,
        "low": min(ratios),
        "high": max(ratios),
        "at most": limit,
        "met": "yes" if median <= limit else "NO",
    }


if __name__ == "__main__":
    main()
