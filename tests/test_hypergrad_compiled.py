"""The compiled path (hobench.hypergrad.compiled): its exactness, the graph rewrites on a traced
ATen graph, the HOBENCH_COMPILE switch and the eager fallback.

This file sorts after test_hypergrad.py on purpose: importing the compiler adds so many objects
to the heap that test_hypergrad.py's tests that walk it (gc.get_objects) run ~40 % slower
after it (one measurement, on a shared machine).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from hobench.hypergrad import compiled, reverse
from hobench.hypergrad.compiled import compile_failure, compile_times, use_compiled
from tests import hypergrad_problems as problems
from tests.test_hypergrad import MODES_TOL, both_modes, check_against_fd, flat, rel_err

aten = torch.ops.aten


def test_compiled_path_is_exact(compiling):
    """The eager path's checks on the compiled path (compiled step, pullback and tangent step,
    the fast forward read-out): forward vs reverse, central differences, the closed form, and
    the eager numbers to roundoff. One small problem, T = 3: on 2 cores, compiling takes ~20 s
    the first time in a process (more with an empty inductor cache), a few seconds per
    function after. The rewrites are tested below without compiling, and the compiled path on
    the hyper-cleaning shape, rewrites included, by the engine benchmarks (against torchopt,
    higher and a float64 reference)."""
    if not use_compiled(True):
        pytest.skip("HOBENCH_COMPILE=0 forces the eager path")
    problem, data = problems.ridge()
    before = len(compile_times())
    fwd, rev = check_against_fd(problem, T=3, compile=True)
    if compile_failure():
        pytest.skip(f"torch.compile does not work here: {compile_failure()}")
    assert sorted(name for name, _ in compile_times()[before:]) == [
        "pullback",
        "step",
        "tangent_step",
    ]
    expected = problems.ridge_closed_form(data, lr=0.1, l2=0.3, T=3)
    eager_fwd, eager_rev = both_modes(problem, T=3)
    for name in ("lr", "l2"):
        assert rel_err(rev.grad[name], expected[name]) < 1e-10
        assert rel_err(fwd.grad[name], expected[name]) < 1e-10
    assert rel_err(flat(fwd.grad), flat(eager_fwd.grad)) < MODES_TOL
    assert rel_err(flat(rev.grad), flat(eager_rev.grad)) < MODES_TOL


def products(x, w, b, c, v, u):
    """What a step's graph holds: addmm with a full-size accumulator, two products of the data
    x that do not depend on each other, products of x batched by vmap over tangents, and a
    product with a zero tangent of the data."""
    accumulated = torch.addmm(c, x.T, v)  # (k, p)
    h = x @ w  # (n, p)
    t = x @ u  # (n, p), independent of h
    batched = torch.bmm(x.expand(3, *x.shape), torch.stack([w, u, w]))  # (3, n, p)
    rows = torch.bmm(torch.stack([v.T, v.T, v.T]), x.expand(3, *x.shape))  # (3, p, k)
    zero = torch.full(x.shape, 0.0, dtype=x.dtype).expand(*x.shape) @ w
    return accumulated, h + b, t, batched, rows, zero


def targets(graph: torch.fx.Graph) -> list:
    return [n.target for n in graph.nodes if n.op == "call_function"]


def test_rewrites_keep_the_values_and_leave_one_product_per_shared_operand():
    g = torch.Generator().manual_seed(0)
    n, k, p = 50, 8, 3
    args = [
        torch.randn(n, k, generator=g, dtype=torch.float64),  # x
        torch.randn(k, p, generator=g, dtype=torch.float64),  # w
        torch.randn(p, generator=g, dtype=torch.float64),  # b
        torch.randn(k, p, generator=g, dtype=torch.float64),  # c
        torch.randn(n, p, generator=g, dtype=torch.float64),  # v
        torch.randn(k, p, generator=g, dtype=torch.float64),  # u
    ]
    gm = make_fx(products, tracing_mode="fake")(*args)
    assert aten.addmm.default in targets(gm.graph) or aten.mm.default in targets(gm.graph)
    compiled.rewrite(gm.graph)
    gm.recompile()
    ops = targets(gm.graph)
    assert aten.addmm.default not in ops and aten.bmm.default not in ops
    # x.T @ v; every product with x on the left (h, t, the batched one) fused into one; the
    # batched one with x on the right; the zero product gone.
    assert ops.count(aten.mm.default) == 3
    for got, want in zip(gm(*args), products(*args), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_switch(monkeypatch):
    monkeypatch.delenv(compiled.ENV, raising=False)
    monkeypatch.setattr(compiled, "_default", True)  # as in any process but the tests'
    assert compiled.use_compiled(True) and not compiled.use_compiled(False)
    assert compiled.use_compiled(None)  # the engine's default is compiled
    compiled.set_default(False)  # what tests/conftest.py does
    assert not compiled.use_compiled(None) and compiled.use_compiled(True)
    monkeypatch.setenv(compiled.ENV, "1")
    assert compiled.use_compiled(None) and not compiled.use_compiled(False)
    monkeypatch.setenv(compiled.ENV, "0")
    assert not compiled.use_compiled(True)  # forced eager


def test_a_failed_compile_warns_once_and_runs_eager(monkeypatch):
    """Where torch.compile fails (here made to; e.g. no C compiler), one warning line, then
    the eager path gives the eager numbers, now and in every later call."""
    monkeypatch.setattr(compiled, "_failure", None)  # restored after the test
    monkeypatch.delenv(compiled.ENV, raising=False)
    monkeypatch.delenv(compiled.PACKAGES_ENV, raising=False)  # no package to load instead

    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no working C compiler found\nmore detail")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    problem, _ = problems.ridge()
    args = (problem.dynamics, problem.s0, problem.hp, 4, problem.batch_at, problem.outer)
    with pytest.warns(RuntimeWarning, match=r"C compiler found\); using the eager path"):
        fallback = reverse(*args, compile=True)
    assert compiled.compile_failure() == "RuntimeError: no working C compiler found"
    eager = reverse(*args, compile=False)
    for name in problem.hp:
        assert torch.equal(fallback.grad[name], eager.grad[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reverse(*args, compile=True)
