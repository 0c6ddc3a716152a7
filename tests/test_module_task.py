"""The module task: any nn.Module under every strategy, exactly.

A user's model and data (tests/module_fixtures.py, named by import path as a suite names them):
Reverse-HG = Forward-HG = central differences in float64 for every kind of hyperparameter; a
functional step equals `module.train(); loss.backward(); optimizer.step()` (BatchNorm's running
statistics included); every registered strategy runs on it; bad input is one line.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hobench.harness.budget import Budget
from hobench.harness.recorder import Recorder
from hobench.harness.suite import SuiteError, load_suite
from hobench.hypergrad import forward, reverse
from hobench.hypergrad.dynamics import descend_module, momentum_rule
from hobench.hypergrad.module import FunctionalModel
from hobench.registry import STRATEGIES, TASKS
from tests import harness_toys
from tests.module_fixtures import TINY, TinyCNN

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions: one thread is faster, and steadier on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TUNES = {
    "lr-momentum-wd": dict(tune=["lr", "momentum", "weight_decay"]),
    "aux": dict(model="tests.module_fixtures:TinyAuxCNN", tune=["aux_weight"], aux_weight=0.5),
    "example-weights": dict(tune=["example_weights"], n_corrupt=12),
    "adam-lr": dict(optimizer="adam", tune=["lr"], lr=0.01),
}


def tiny(dtype: str = "float64", **params):
    return TASKS.create("module", seed=0, **{**TINY, "dtype": dtype, **params})


def unrolled_loss(problem, hp):
    """f(λ) = E(s_T(λ)) by plain steps: what central differences difference."""
    dynamics = problem.dynamics
    state = dynamics.init(problem.params0(), hp)
    with torch.no_grad():
        for t in range(1, problem.steps + 1):
            state = dynamics.step(state, hp, problem.batch_at(t))
        return float(problem.outer(dynamics.params(state), hp))


FD_STEP = 1e-5


def central_differences(problem, hp, name, entries, h=FD_STEP):
    out = []
    for i in entries:
        plus = {k: v.clone() for k, v in hp.items()}
        minus = {k: v.clone() for k, v in hp.items()}
        plus[name].view(-1)[i] += h
        minus[name].view(-1)[i] -= h
        out.append((unrolled_loss(problem, plus) - unrolled_loss(problem, minus)) / (2 * h))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("case", list(TUNES))
def test_reverse_equals_forward_equals_central_differences(case):
    task = tiny(**TUNES[case])
    problem = task.gradient_problem()
    hp = problem.project(problem.hp0)
    s0 = problem.dynamics.init(problem.params0(), hp)
    args = (problem.dynamics, s0, hp, problem.steps, problem.batch_at, problem.outer)
    backward, ahead = reverse(*args), forward(*args)
    # Central differences cannot resolve less than the rounding of f(λ ± h) over 2h, about
    # eps·|f|/h; allowed 4× that (8.5e-11 here), ~8e-6 of a hypergradient as small as log_wd's
    # (1.1e-5, measured off by 1.4e-11), 1e-9 or less of the others.
    roundoff = 4 * torch.finfo(torch.float64).eps * abs(unrolled_loss(problem, hp)) / FD_STEP
    for name, value in hp.items():
        entries = range(value.numel()) if value.numel() <= 12 else (0, 17, 40)
        fd = central_differences(problem, hp, name, entries)
        rev = backward.grad[name].reshape(-1)[list(entries)]
        fwd = ahead.grad[name].reshape(-1)[list(entries)]
        scale = fd.abs().max()
        assert scale > 100 * roundoff, f"{name}: the hypergradient is lost in roundoff"
        assert (rev - fd).abs().max() <= 1e-6 * scale + roundoff, (name, rev, fd)
        assert (fwd - rev).abs().max() <= 1e-10 * scale, (name, fwd, rev)


def test_batchnorm_statistics_reach_the_hypergradient():
    """λ moves E through the running statistics too: holding them at s_0 changes ∂E/∂η."""
    task = tiny(tune=["lr"])
    problem = task.gradient_problem()
    hp = problem.hp0
    s0 = problem.dynamics.init(problem.params0(), hp)
    full = reverse(problem.dynamics, s0, hp, problem.steps, problem.batch_at, problem.outer)
    frozen_buffers = s0["w"]["buffers"]

    def outer_without(model, hp):
        return problem.outer({"params": model["params"], "buffers": frozen_buffers}, hp)

    args = (problem.dynamics, s0, hp, problem.steps, problem.batch_at, outer_without)
    assert not torch.allclose(reverse(*args).grad["log_lr"], full.grad["log_lr"], rtol=1e-3)


def test_a_step_is_the_ordinary_train_mode_optimizer_step():
    """Parameters and BatchNorm running statistics after 3 steps equal those of
    `module.train(); loss.backward(); torch.optim.SGD(momentum).step()` on the same batches."""
    torch.manual_seed(0)
    module = TinyCNN().double()
    net = FunctionalModel(module, torch.float64, torch.device("cpu"))
    rng = np.random.default_rng(1)
    batches = [
        (torch.tensor(rng.normal(size=(8, 1, 6, 6))), torch.tensor(rng.integers(0, 3, 8)))
        for _ in range(3)
    ]

    def loss(model, hp, batch):
        out, buffers = net.train_forward(model, batch[0])
        return F.cross_entropy(out, batch[1]), buffers

    dynamics = descend_module(loss, momentum_rule(0.1, 0.9))
    state = dynamics.init(net.initial(), {})
    ordinary = copy.deepcopy(module).train()
    optimizer = torch.optim.SGD(ordinary.parameters(), lr=0.1, momentum=0.9)
    for batch in batches:
        state = dynamics.step(state, {}, batch)
        optimizer.zero_grad()
        F.cross_entropy(ordinary(batch[0]), batch[1]).backward()
        optimizer.step()
    model = dynamics.params(state)
    for name, value in ordinary.named_parameters():
        torch.testing.assert_close(model["params"][name], value.detach(), rtol=0, atol=1e-12)
    for name in ("bn.running_mean", "bn.running_var"):
        expected = ordinary.get_buffer(name)
        assert not torch.equal(expected, module.get_buffer(name))  # the statistics did move
        torch.testing.assert_close(model["buffers"][name], expected, rtol=0, atol=1e-12)
    x = batches[0][0]
    torch.testing.assert_close(net.eval_forward(model, x), ordinary.eval()(x), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_compiled_reverse_equals_eager_in_float32(compiling):
    task = tiny("float32", tune=["lr", "momentum", "weight_decay"])
    problem = task.gradient_problem()
    s0 = problem.dynamics.init(problem.params0(), problem.hp0)
    args = (problem.dynamics, s0, problem.hp0, problem.steps, problem.batch_at, problem.outer)
    eager, compiled = reverse(*args, compile=False), reverse(*args, compile=True)
    for name in eager.grad:
        torch.testing.assert_close(compiled.grad[name], eager.grad[name], rtol=1e-4, atol=1e-7)


def test_minibatches_are_a_function_of_the_seed():
    first, again, other = tiny(), tiny(), TASKS.create("module", seed=1, **TINY)
    assert torch.equal(first.gradient_problem().batch_at(9), again.gradient_problem().batch_at(9))
    assert not torch.equal(first.training().batch_at(9), other.training().batch_at(9))
    config = first.default_config()
    assert first.evaluate(config).val_loss == again.evaluate(config).val_loss


def test_per_layer_groups_and_patterns():
    assert [p.name for p in tiny().space()] == ["lr", "momentum", "wd:conv", "wd:fc"]
    task = tiny(decay_groups="conv.*, fc.weight")
    assert task.groups == {"conv.*": ["conv.weight", "conv.bias"], "fc.weight": ["fc.weight"]}


def test_population_training_equals_one_by_one():
    task = tiny()
    configs = [
        {"lr": lr, "momentum": 0.5, "wd:conv": 1e-3, "wd:fc": wd}
        for lr, wd in ((0.01, 1e-4), (0.3, 1e-2), (0.1, 1e-5))
    ]
    batched, alone = task.evaluate_population(configs), [task.evaluate(c) for c in configs]
    for b, a in zip(batched, alone, strict=True):
        assert b.val_loss == pytest.approx(a.val_loss, rel=1e-9)


def test_cleaning_reports_the_paper_protocol():
    task = tiny(tune=["example_weights"], n_corrupt=12)
    weights = torch.zeros(task.n, dtype=torch.float64)
    clean = np.setdiff1d(np.arange(task.n), task.corrupted)
    weights[torch.as_tensor(clean)] = 1.0
    out = task.finalize({"weights": weights})
    assert out["kept"] == task.n - 12 and out["f1"] == 1.0
    assert set(out["rows"]) == {"Oracle", "Baseline"}
    assert out["test_acc"] == out["rows"]["Oracle"]["test_acc"]  # the same retraining


# Every registered strategy, on a user's module: a finite final score within the budget.
BUDGETS = {"forward-hg": 60.0, "rtho": 60.0, "rtho-nt": 60.0, "ift-neumann": 30.0}
# Parameters sized to the tiny task's T = 6 (their defaults assume longer runs).
PARAMS = {"early-stopping": {"check_every": 3}, "truncated-hg": {"truncate": 3}}


BUILT_IN = [n for n in STRATEGIES.names() if STRATEGIES.get(n).__module__.startswith("hobench.")]


@pytest.mark.parametrize("strategy", BUILT_IN)
def test_every_strategy_runs_on_a_user_module(strategy):
    task = tiny("float32", tune=["lr", "momentum", "weight_decay"])
    budget = Budget(cost=BUDGETS.get(strategy, 12.0)).start()
    recorder = Recorder(budget)
    STRATEGIES.create(strategy, **PARAMS.get(strategy, {})).run(
        task, budget, np.random.default_rng(0), recorder
    )
    assert recorder.points, strategy
    assert np.isfinite(recorder.final["test_acc"]), recorder.final
    assert budget.cost_used <= budget.cost * (1 + 1e-9)


# --- bad input: one line before any cell -------------------------------------------------------

SUITE = """
name = "bad-module"
seeds = [0]
[budget]
cost = 4
[[tasks]]
kind = "module"
{task}
[[strategies]]
kind = "random"
"""
TASK = {
    "model": '"tests.module_fixtures:TinyCNN"',
    "data": '"tests.module_fixtures:tiny_data"',
    "n_train": "48",
    "n_val": "36",
    "n_test": "36",
    "batch_size": "12",
}

BAD = {
    "not-importable": ('model = "no_such_package.models:Net"', "tasks[0].model", "PYTHONPATH"),
    "not-a-module": ('model = "tests.module_fixtures:not_a_module"', "tasks[0].model", "str"),
    "no-such-callable": ('model = "tests.module_fixtures:Nope"', "tasks[0].model", "no callable"),
    "pattern-matches-nothing": (
        'decay_groups = "conv.*, head.*"',
        "tasks[0].decay_groups",
        "'head.*' matches no parameter",
    ),
    "batch-too-large": ("batch_size = 100", "tasks[0].batch_size", "n_train"),
    "no-aux-output": ('tune = ["aux_weight"]', "tasks[0].tune", "auxiliary loss"),
    "dropout": ('model = "tests.module_fixtures:DropoutCNN"', "tasks[0].model", "p = 0"),
    "momentum-without-momentum": (
        'optimizer = "adam"\ntune = ["momentum"]',
        "tasks[0].tune",
        "optimizer",
    ),
    "unknown-hyperparameter": ('tune = ["dropout"]', "tasks[0].tune", "name some of"),
    "wrong-input-shape": (
        'model = "tests.module_fixtures:FlatMLP"',
        "tasks[0].model",
        "(2, 1, 6, 6)",
    ),
    "data-factory-raises": (
        'data = "tests.module_fixtures:broken_data"',
        "tasks[0].data",
        "OSError",
    ),
}


def _suite(tmp_path, extra):
    """The suite with the task's keys, those `extra` sets ("key = value" lines) replaced."""
    keys = dict(TASK)
    keys.update(line.split(" = ", 1) for line in extra.splitlines())
    text = SUITE.format(task="\n".join(f"{k} = {v}" for k, v in keys.items()))
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_bad_module_task_is_one_line_before_any_cell(tmp_path, case):
    extra, key, words = BAD[case]
    with pytest.raises(SuiteError) as info:
        load_suite(_suite(tmp_path, extra))
    message = str(info.value)
    assert "\n" not in message and key in message and words in message, message


def test_cli_refuses_a_bad_model_with_exit_2(tmp_path):
    path = _suite(tmp_path, BAD["not-a-module"][0])
    result = subprocess.run(
        [sys.executable, "-m", "hobench", "run", str(path), "--results-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env=harness_toys.subprocess_env(),
        timeout=600,  # a net only: CI machines run at load 6-10
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "tasks[0].model" in result.stderr
    assert not (tmp_path / "r").exists()
