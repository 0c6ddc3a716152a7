"""Exactness of the hypergradients: forward, reverse, finite differences and closed forms agree
in float64 (rel. error < 1e-6 against central differences, < 1e-9 forward against reverse)."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from hobench.hypergrad import ForwardState, forward, reverse
from tests import hypergrad_problems as problems

FD_TOL, MODES_TOL = 1e-6, 1e-9


def f_value(problem, hp, T):
    """f(λ) = E(s_T(λ), λ), by simply training (reverse's value)."""
    result = reverse(problem.dynamics, problem.s0, hp, T, problem.batch_at, problem.outer)
    return float(result.value)


def central_difference(problem, T, name, direction, h=1e-5):
    """(f(λ + h d) − f(λ − h d)) / 2h along `direction` of hyperparameter `name`."""
    plus = dict(problem.hp, **{name: problem.hp[name] + h * direction})
    minus = dict(problem.hp, **{name: problem.hp[name] - h * direction})
    return (f_value(problem, plus, T) - f_value(problem, minus, T)) / (2 * h)


def rel_err(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / max(b.abs().max(), 1e-12))


def both_modes(problem, T, compile=False):
    args = (problem.dynamics, problem.s0, problem.hp, T, problem.batch_at, problem.outer)
    return forward(*args, compile=compile), reverse(*args, compile=compile)


def directions(tensor, count=3, seed=0):
    """A few random unit directions in a hyperparameter's space (the unit vector for scalars)."""
    if tensor.numel() == 1:
        return [torch.ones_like(tensor)]
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(tensor.shape, generator=g, dtype=tensor.dtype) for _ in range(count)]


def flat(grad: dict) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grad.values()])


def check_against_fd(problem, T, compile=False):
    """Errors are relative to the size of the whole hypergradient, so an entry that is exactly
    zero in theory (Adam's β1 at T = 1) is compared at the scale of the others, not of roundoff.
    `compile`: check the compiled path (the differences are always taken eagerly)."""
    fwd, rev = both_modes(problem, T, compile)
    assert float(fwd.value) == pytest.approx(float(rev.value), rel=1e-12)
    assert rel_err(flat(fwd.grad), flat(rev.grad)) < MODES_TOL
    scale = float(flat(rev.grad).abs().max())
    for name, value in problem.hp.items():
        for d in directions(value):
            fd = central_difference(problem, T, name, d)
            ours = float((rev.grad[name] * d).sum())
            assert abs(ours - fd) <= FD_TOL * max(abs(fd), scale * float(d.abs().max())), name
    return fwd, rev


PROBLEMS = {
    "ridge": lambda: problems.ridge()[0],
    "weighted-softmax": problems.weighted_softmax,
    "mlp-momentum": problems.mlp_momentum,
    "adam": problems.adam_lr,
}


@pytest.mark.parametrize("T", [1, 2, 15])
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_forward_reverse_and_finite_differences_agree(name, T):
    fwd, rev = check_against_fd(PROBLEMS[name](), T)
    # T = 1 has only the α_1·B_1 term: the hypergradient must not vanish.
    assert all(float(g.abs().max()) > 0 for g in rev.grad.values() if g.numel() > 1) or T > 1
    assert any(float(g.abs().max()) > 0 for g in rev.grad.values())


@pytest.mark.parametrize("T", [1, 2, 40])
def test_ridge_matches_closed_form(T):
    problem, data = problems.ridge()
    expected = problems.ridge_closed_form(data, lr=0.1, l2=0.3, T=T)
    fwd, rev = both_modes(problem, T)
    for name in ("lr", "l2"):
        assert rel_err(rev.grad[name], expected[name]) < 1e-10
        assert rel_err(fwd.grad[name], expected[name]) < 1e-10


def test_one_step_gradient_is_alpha_1_b_1():
    """At T = 1 the whole hypergradient is α_1 B_1; dropping it (the misprinted Algorithm 1)
    would give exactly 0 for the learning rate."""
    problem, data = problems.ridge()
    rev = reverse(problem.dynamics, problem.s0, problem.hp, 1, problem.batch_at, problem.outer)
    expected = problems.ridge_closed_form(data, lr=0.1, l2=0.3, T=1)["lr"]
    assert float(expected) != 0.0
    assert rel_err(rev.grad["lr"], expected) < 1e-10


def test_direct_dependence_of_outer_and_initial_state_on_hyperparameters():
    """E may read λ (here a penalty on it) and s_0 may be a function of λ: both terms count."""
    base = problems.weighted_softmax()

    def outer(p, hp):
        return base.outer(p, hp) + 0.1 * (hp["lr"] ** 2) + 0.05 * (hp["weights"] ** 2).sum()

    p0 = base.s0["w"]

    def s0(hp):
        # The initial weights scale with the learning rate: Z_0 = ∂s_0/∂λ ≠ 0.
        return base.dynamics.init((p0[0] * (1 + hp["lr"]), p0[1] + hp["weights"][:3]), hp)

    problem = problems.Problem(base.dynamics, s0, base.hp, base.batch_at, outer)
    check_against_fd(problem, T=5)


def test_an_initial_state_only_partly_dependent_on_hyperparameters():
    """Momentum's s_0(λ) = (w_0(λ), 0): the velocity depends on no λ, and adds nothing."""
    base = problems.mlp_momentum()
    p0 = base.s0["w"]

    def s0(hp):
        return base.dynamics.init(tuple(p * (1 + hp["rho"]) for p in p0), hp)

    problem = problems.Problem(base.dynamics, s0, base.hp, base.batch_at, base.outer)
    fwd, rev = both_modes(problem, 3)
    assert rel_err(flat(fwd.grad), flat(rev.grad)) < MODES_TOL


def test_truncated_reverse():
    problem = problems.mlp_momentum()
    T, K = 12, 4
    args = (problem.dynamics, problem.s0, problem.hp, T, problem.batch_at, problem.outer)
    full = reverse(*args)
    same = reverse(*args, truncate=T)
    for name in problem.hp:
        assert torch.equal(full.grad[name], same.grad[name])

    truncated = reverse(*args, truncate=K)
    assert any(rel_err(truncated.grad[k], full.grad[k]) > 1e-3 for k in problem.hp)

    # By definition, truncation treats s_{T-K} as a constant: the same number is the full
    # hypergradient of the last K steps started from s_{T-K} (here computed in forward mode).
    from hobench.hypergrad import unroll

    s_T_minus_K = unroll(problem.dynamics, problem.s0, problem.hp, T - K, problem.batch_at, 0)[-1]
    shifted = lambda t: problem.batch_at(t + T - K)  # noqa: E731
    last_k = forward(problem.dynamics, s_T_minus_K, problem.hp, K, shifted, problem.outer)
    for name in problem.hp:
        assert rel_err(truncated.grad[name], last_k.grad[name]) < MODES_TOL


def test_truncate_out_of_range_is_rejected():
    problem = problems.ridge()[0]
    with pytest.raises(ValueError, match="truncate"):
        reverse(problem.dynamics, problem.s0, problem.hp, 5, problem.batch_at, problem.outer, 6)


@pytest.fixture
def young_heap():
    """Everything alive before the test moved out of the collector's sight (gc.freeze), so each
    count below walks only what the test made: a walk of the whole heap (torch, the compiler)
    took 0.3-0.5 s a step."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def _live_weight_counter(problem):
    """A batch stream that counts, each time it is called, the distinct storages alive holding a
    tensor of the weights' shape (the ridge problem's weights are its only 7-vectors): one per
    stored state, plus the adjoint α during the backward sweep. Views and detached aliases share
    a storage, so they are not counted twice. Under `young_heap`, what existed before the test
    is not counted: the tests compare counts with the first one."""
    shape = problem.s0["w"].shape
    seen: list[int] = []

    def batch_at(t):
        gc.collect()
        storages = {
            o.untyped_storage().data_ptr()
            for o in gc.get_objects()
            if isinstance(o, torch.Tensor) and o.shape == shape
        }
        seen.append(len(storages))
        return problem.batch_at(t)

    return batch_at, seen


# Small T: the pattern shows at any T.
@pytest.mark.parametrize("T", [5, 12])
def test_reverse_keeps_exactly_T_plus_1_states(T, young_heap):
    problem, _ = problems.ridge(d=7)
    batch_at, seen = _live_weight_counter(problem)
    reverse(problem.dynamics, problem.s0, problem.hp, T, batch_at, problem.outer)
    # The forward sweep adds one stored state per step (call t sees s_0..s_{t-1}); the backward
    # sweep (calls T+1..2T) starts with s_0..s_T alive plus α_T, and releases one state per step
    # (except s_T, which is returned to the caller).
    forward_sweep, backward_sweep = seen[:T], seen[T:]
    assert list(np.diff(forward_sweep)) == [1] * (T - 1)
    assert backward_sweep[0] - forward_sweep[0] == T + 1  # T more states, and α
    assert list(-np.diff(backward_sweep)) == [0] + [1] * (T - 2)
    assert max(seen) == backward_sweep[0]


def test_truncated_reverse_keeps_K_plus_1_states(young_heap):
    problem, _ = problems.ridge(d=7)
    batch_at, seen = _live_weight_counter(problem)
    reverse(problem.dynamics, problem.s0, problem.hp, 14, batch_at, problem.outer, truncate=5)
    # seen[0] is the caller's s_0; at most s_{T-5}..s_T (K + 1 states) and α join it.
    assert max(seen) - seen[0] == 5 + 1 + 1


def test_forward_memory_does_not_grow_with_T(young_heap):
    problem, _ = problems.ridge(d=7)
    batch_at, seen = _live_weight_counter(problem)
    forward(problem.dynamics, problem.s0, problem.hp, 14, batch_at, problem.outer)
    assert max(seen[1:]) == min(seen[1:])  # constant from the first step on


def test_online_forward_updates_hyperparameters_without_reset():
    """RTHO's object: the hypergradient read at t equals forward-HG over the first t steps, and
    changing λ midway keeps s and Z (the result differs from a restart)."""
    problem = problems.mlp_momentum()
    online = ForwardState(problem.dynamics, problem.s0, problem.hp)
    for t in range(1, 6):
        online.advance(problem.batch_at(t))
    at5 = online.hypergradient(problem.outer)
    ref = forward(problem.dynamics, problem.s0, problem.hp, 5, problem.batch_at, problem.outer)
    for name in problem.hp:
        assert rel_err(at5.grad[name], ref.grad[name]) < 1e-12

    z_before = online.z["w"][0].clone()
    online.hp = {k: v * 0.9 for k, v in online.hp.items()}
    assert torch.equal(online.z["w"][0], z_before)
    online.advance(problem.batch_at(6))
    assert online.t == 6
