"""The tasks with a dimension knob (featuredecay: m weight decays; lrschedule: T steps in m
step-size pieces): exact hypergradients in float64, the knob's meaning, every strategy runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hobench.domains import ParamError
from hobench.harness.budget import Budget
from hobench.harness.recorder import Recorder, summarise_config
from hobench.hypergrad import gd, scheduled_gd, unroll
from hobench.registry import STRATEGIES, TASKS
from tests.hypergrad_problems import Problem
from tests.test_hypergrad import check_against_fd

TINY_DECAY = dict(n_train=30, n_val=20, n_test=20, features=40, steps=6, dtype="float64")
TINY_SCHEDULE = dict(
    n_train=60, n_val=30, n_test=30, width=6, batch_size=10, steps=6, dtype="float64"
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny problems: two threads only contend (10x slower on a loaded 2-core machine).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def as_problem(task) -> Problem:
    """A task's gradient problem in the form the engine's exactness checks take."""
    p = task.gradient_problem()
    hp = p.project(p.hp0)
    return Problem(p.dynamics, p.dynamics.init(p.params0(), hp), hp, p.batch_at, p.outer)


@pytest.mark.parametrize(
    "kind, params",
    [
        ("featuredecay", dict(TINY_DECAY, groups=1)),
        ("featuredecay", dict(TINY_DECAY, groups=7)),
        ("featuredecay", dict(TINY_DECAY, groups=40)),  # one weight decay per feature
        ("lrschedule", dict(TINY_SCHEDULE, pieces=1)),
        ("lrschedule", dict(TINY_SCHEDULE, pieces=4)),  # pieces of 2, 1, 2, 1 steps
        ("lrschedule", dict(TINY_SCHEDULE, pieces=0)),  # one step size per step, m = T
    ],
)
def test_hypergradient_matches_finite_differences_and_forward_matches_reverse(kind, params):
    # A point away from the defaults, so no entry of λ is the same for every group or piece.
    task = TASKS.create(kind, seed=3, **params)
    problem = as_problem(task)
    ((name, value),) = problem.hp.items()
    spread = torch.linspace(-0.5, 0.5, value.numel(), dtype=value.dtype)
    problem.hp = {name: value + spread}
    fwd, rev = check_against_fd(problem, task.steps)
    assert fwd.grad[name].shape == (params.get("groups") or task.pieces,)
    assert rev.grad[name].abs().min() > 0  # every group and every piece moves f


def test_feature_groups_are_contiguous_bands_of_near_equal_size():
    for groups in (1, 3, 7, 40):
        task = TASKS.create("featuredecay", seed=0, **dict(TINY_DECAY, groups=groups))
        sizes = torch.bincount(task.group_of, minlength=groups)
        assert len(sizes) == groups and sizes.max() - sizes.min() <= 1
        assert (task.group_of.diff() >= 0).all()  # sorted by bandwidth: bands are contiguous
        assert len(task.space()) == groups


def test_every_m_shares_the_m_equals_1_problem():
    """Every λ_g equal gives the same training at every m: the m = 1 optimum is reachable."""
    losses = []
    for groups in (1, 4, 40):
        task = TASKS.create("featuredecay", seed=1, **dict(TINY_DECAY, groups=groups))
        losses.append(task.evaluate({f"l2_{g}": 3e-4 for g in range(groups)}).val_loss)
    assert losses[0] == pytest.approx(losses[1], rel=1e-12) == losses[2]


def test_schedule_pieces_split_the_steps_and_a_constant_schedule_is_plain_sgd():
    def loss(w, hp, batch):
        return 0.5 * (w * w).sum() * batch

    T = 7
    w0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    for m in (1, 3, 7):
        etas = 0.1 * torch.arange(1, m + 1, dtype=torch.float64)
        dyn = scheduled_gd(loss, steps=T, pieces=m)
        # On ½‖w‖² each step multiplies w by 1 − η_p(t): the product names the pieces used.
        w = unroll(dyn, dyn.init(w0, {}), {"lr": etas}, T, lambda t: (t, 1.0), keep_last=0)
        pieces = [(t - 1) * m // T for t in range(1, T + 1)]
        assert sorted(set(pieces)) == list(range(m))
        expected = w0 * math.prod(1 - float(etas[p]) for p in pieces)
        assert torch.allclose(w[-1]["w"], expected, rtol=1e-14)
    constant = scheduled_gd(loss, steps=T, pieces=3)
    plain = gd(loss, lr="lr")
    hp = {"lr": torch.full((3,), 0.3, dtype=torch.float64)}
    a = unroll(constant, {"w": w0}, hp, T, lambda t: (t, 2.0), 0)[-1]["w"]
    b = unroll(
        plain, {"w": w0}, {"lr": torch.tensor(0.3, dtype=torch.float64)}, T, lambda t: 2.0, 0
    )[-1]["w"]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="pieces"):
        scheduled_gd(loss, steps=3, pieces=4)


def test_pieces_zero_is_one_step_size_per_step():
    task = TASKS.create("lrschedule", seed=0, **dict(TINY_SCHEDULE, pieces=0))
    assert task.pieces == task.steps == len(task.space())
    assert task.crossover()["m"] == task.crossover()["T"] == 6


@pytest.mark.parametrize(
    "kind, params, problem",
    [
        ("featuredecay", dict(TINY_DECAY, groups=41), "groups: 41 > features = 40"),
        ("lrschedule", dict(TINY_SCHEDULE, pieces=7), "pieces: 7 > steps = 6"),
        ("lrschedule", dict(TINY_SCHEDULE, n_train=1750), "> 1797 digits"),
    ],
)
def test_bad_knob_values_are_refused_in_one_line(kind, params, problem):
    with pytest.raises(ParamError, match=problem):
        TASKS.create(kind, **params)


@pytest.mark.parametrize("kind", ["featuredecay", "lrschedule"])
def test_references_are_the_default_and_the_best_single_value(kind):
    task = TASKS.create(kind, seed=0, **(TINY_DECAY if kind == "featuredecay" else TINY_SCHEDULE))
    info = task.crossover()
    assert set(info) == {
        "m",
        "T",
        "state_mb",
        "default_val_loss",
        "single_val_loss",
        "single_value",
    }
    assert info["single_val_loss"] <= info["default_val_loss"]
    best = task.evaluate({p.name: info["single_value"] for p in task.space()})
    assert best.val_loss == pytest.approx(info["single_val_loss"], rel=1e-12)
    assert best.extra["crossover"] == info


# hobench's own strategies (test modules register toys, one of which kills its process).
BUILT_IN = [n for n in STRATEGIES.names() if STRATEGIES.get(n).__module__.startswith("hobench.")]


# The knob tasks only evaluate whole runs (no Task.training) and search no single learning
# rate: the multi-fidelity strategies and hd-lr refuse them in one line (docs/limits.md).
REFUSED = {
    "asha": "can be scored during training",
    "hyperband": "can be scored during training",
    "bohb": "can be scored during training",
    "hd-lr": "searches none",
}
# The stochastic bilevel solvers take plain SGD steps on the training loss: lrschedule (whose
# hyperparameters are the step sizes) names no inner step size for them.
REFUSED_BY_KIND = {
    ("lrschedule", solver): "names no inner step size"
    for solver in ("soba", "saba", "amigo", "f2sa")
}


@pytest.mark.parametrize("strategy", BUILT_IN)
@pytest.mark.parametrize("kind", ["featuredecay", "lrschedule"])
def test_every_strategy_runs_on_the_knob_tasks(kind, strategy):
    # Three hyperparameters, so forward mode's hypergradient (~7 plain runs) fits the budget
    # (kept small: the GP sampler refits per evaluation); T = 10, early stopping's interval.
    params = dict(TINY_DECAY, groups=3) if kind == "featuredecay" else dict(TINY_SCHEDULE, pieces=3)
    task = TASKS.create(kind, seed=0, **dict(params, steps=10, dtype="float32"))
    budget = Budget(cost=8).start()
    recorder = Recorder(budget)
    run = STRATEGIES.create(strategy).run
    refused = REFUSED.get(strategy) or REFUSED_BY_KIND.get((kind, strategy))
    if refused:
        with pytest.raises(ValueError, match=refused):
            run(task, budget, np.random.default_rng(0), recorder)
        return
    run(task, budget, np.random.default_rng(0), recorder)
    assert budget.cost_used <= 8 and math.isfinite(recorder.final["val_loss"])
    assert recorder.final["crossover"]["m"] == len(task.space())


def test_a_config_of_many_scalars_is_recorded_as_one_summary():
    # 10^4 weight decays searched by a black-box strategy must not store 10^4 numbers a point.
    assert summarise_config({"a": 0.5, "b": torch.tensor(2.0)}) == {"a": 0.5, "b": 2.0}
    big = summarise_config({f"l2_{g}": float(g) for g in range(10)})
    assert big == {"summary": {"n": 10, "mean": 4.5, "min": 0.0, "max": 9.0, "nonzero": 9}}
