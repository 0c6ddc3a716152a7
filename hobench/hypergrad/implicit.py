"""Implicit-differentiation hypergradients (IFT): the last state taken as the inner solution.

If training has converged to a point z* where G(z*, λ) = 0, the implicit function theorem gives
dz*/dλ = −(∂_z G)⁻¹ ∂_λ G, so with v solving (∂_z G)ᵀ v = ∇_z E:

    ∇f = ∂_λ E − (∂_λ G)ᵀ v.

Two choices of G, both read at the last state of T training steps:
- Hessian form: z = the weights w, G = ∇_w J (J the training loss), so ∂_z G = H, the Hessian:
  solve H v = ∇_w E, then ∇f = ∂_λ E − (∂_λ ∇_w J)ᵀ v.
- Fixed-point form: z = the whole state s, G = s − Φ(s, λ) (Φ the dynamics' step):
  solve (I − ∂Φ/∂s)ᵀ v = ∇_s E, then ∇f = ∂_λ E + (∂Φ/∂λ)ᵀ v.

v is found with matrix-free products only (Hessian-vector or vector-Jacobian products,
`torch.func.vjp`, the linearisation built once): by conjugate gradient (`ift_cg`, Hessian form)
or a truncated Neumann series (`ift_neumann`, Hessian form with step α; `ift_fixed_point`, the
fixed-point form, whose series is Σ_k (∂Φ/∂sᵀ)^k ∇_s E). This is hypertorch's CG and
fixed_point. No trajectory is stored: memory is one state and one linearisation, whatever T.

Failure modes (tests/test_implicit.py shows the first, the Hessian form's blindness to η, and
CG's stop at non-positive curvature):
- Not converged. The formulas hold only at a solution. After T steps that have not reached one,
  the result is the hypergradient of a problem nobody solved, not of the T-step run: it differs
  from Reverse-HG's exact number, and more solver iterations do not close the gap.
- Optimiser hyperparameters (η, μ) do not move the solution, only the path to it: the Hessian
  form gives them exactly ∂_λ E (0 when E does not read them), and the fixed-point form gives
  them ∂_λ E + (∂Φ/∂λ)ᵀ v, whose second term vanishes as training converges (for gradient
  descent ∂Φ/∂η = −∇J). s_0's dependence on λ is
  ignored likewise.
- CG needs H positive definite: it stops at the first direction of non-positive curvature (a
  non-convex J). The Hessian Neumann series converges only when 0 < α < 2/L (L the largest
  eigenvalue of H), the fixed-point one only when ∂Φ/∂s is a contraction. The fixed-point form
  needs a stationary Φ (gradient descent, momentum; not Adam, whose step counter moves).
- On a stochastic batch stream H and Φ are those of the last batch, batch_at(T).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.func import grad, grad_and_value, vjp
from torch.utils._pytree import tree_flatten, tree_unflatten

from hobench.hypergrad.common import BatchStream, InitialState, Outer, initial_state, state_outer
from hobench.hypergrad.dynamics import HP, Dynamics, State
from hobench.hypergrad.reverse import unroll

Operator = Callable[[torch.Tensor], torch.Tensor]


class ImplicitHypergradient(NamedTuple):
    """A `Hypergradient`'s fields, and the operator products the linear solver used (what its
    cost depends on)."""

    value: torch.Tensor
    grad: dict[str, torch.Tensor]
    final_state: State
    solver_iterations: int


def _ravel(tree) -> tuple[torch.Tensor, Callable]:
    """A pytree of tensors as one flat vector, and the map back."""
    leaves, spec = tree_flatten(tree)
    shapes = [x.shape for x in leaves]
    sizes = [x.numel() for x in leaves]

    def unravel(flat: torch.Tensor):
        parts = torch.split(flat, sizes)
        return tree_unflatten([p.reshape(s) for p, s in zip(parts, shapes, strict=True)], spec)

    return torch.cat([x.reshape(-1) for x in leaves]), unravel


def conjugate_gradient(
    apply: Operator, b: torch.Tensor, iterations: int, tol: float
) -> tuple[torch.Tensor, int]:
    """x ≈ M⁻¹ b for a symmetric positive-definite M given as x ↦ Mx, from x = 0; stops after
    `iterations` products, once ‖r‖ ≤ tol·‖b‖, or at non-positive curvature (M not definite
    there: the step would go the wrong way). Returns x and the products used."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rs = torch.dot(r, r)
    threshold = tol * rs.sqrt()
    used = 0
    while used < iterations and rs.sqrt() > threshold:
        Mp = apply(p)
        used += 1
        curvature = torch.dot(p, Mp)
        if curvature <= 0:
            break
        a = rs / curvature
        x = x + a * p
        r = r - a * Mp
        rs_next = torch.dot(r, r)
        p = r + (rs_next / rs) * p
        rs = rs_next
    return x, used


def neumann(apply: Operator, b: torch.Tensor, iterations: int, alpha: float) -> torch.Tensor:
    """x ≈ M⁻¹ b = α Σ_{k≥0} (I − αM)^k b, the first `iterations` + 1 terms (one product each
    after the first); converges when the spectral radius of I − αM is below 1."""
    term, total = b, b
    for _ in range(iterations):
        term = term - alpha * apply(term)
        total = total + term
    return alpha * total


def implicit(
    residual: Callable[[torch.Tensor, HP], torch.Tensor],
    z: torch.Tensor,
    hp: HP,
    outer_of_z: Callable[[torch.Tensor, HP], torch.Tensor],
    solve: Callable[[Operator, torch.Tensor], tuple[torch.Tensor, int]],
) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """(E, ∂_λ E − (∂_λ G)ᵀ v, products used) where (∂_z G)ᵀ v = ∇_z E is solved by `solve`,
    for G = `residual`, zero at the solution z (a flat vector)."""
    hp = {k: v.detach() for k, v in hp.items()}
    (dz, dhp), value = grad_and_value(outer_of_z, argnums=(0, 1))(z, hp)
    _, pull_z = vjp(lambda x: residual(x, hp), z)
    v, used = solve(lambda u: pull_z(u)[0], dz)
    _, pull_hp = vjp(lambda h: residual(z, h), hp)
    mixed = pull_hp(v)[0]
    return value.detach(), {k: (dhp[k] - mixed[k]).detach() for k in hp}, used


def _last_state(dynamics, s0, hp, steps, batch_at, compile):
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    with torch.no_grad():
        start = initial_state(s0, hp)
    return unroll(dynamics, start, hp, steps, batch_at, keep_last=0, compile=compile)[-1]


def _hessian_form(
    dynamics, s0, hp, steps, batch_at, outer, solve, compile
) -> ImplicitHypergradient:
    if dynamics.loss is None:
        raise ValueError("the Hessian form needs the dynamics' training loss (Dynamics.loss)")
    state = _last_state(dynamics, s0, hp, steps, batch_at, compile)
    model = dynamics.params(state)
    # z = the weights J is minimised over; a module's buffers are held at their last values.
    weights, rebuild = dynamics.split(model) if dynamics.split else (model, lambda w: w)
    w, unravel = _ravel(weights)
    batch = batch_at(max(steps, 1))
    gradient = grad(lambda weights, h: dynamics.loss(rebuild(weights), h, batch))

    def residual(x, h):
        return _ravel(gradient(unravel(x), h))[0]  # ∇_w J, zero at a minimum

    def outer_of_z(x, h):
        return outer(rebuild(unravel(x)), h)

    value, hg, used = implicit(residual, w, hp, outer_of_z, solve)
    return ImplicitHypergradient(value, hg, state, used)


def ift_cg(
    dynamics: Dynamics,
    s0: InitialState,
    hp: HP,
    steps: int,
    batch_at: BatchStream,
    outer: Outer,
    iterations: int = 20,
    tol: float = 1e-6,
    compile: bool | None = None,
) -> ImplicitHypergradient:
    """Implicit hypergradient, Hessian form, by conjugate gradient on H v = ∇_w E.

    Inputs as for `reverse`, plus at most `iterations` Hessian-vector products, fewer once the
    residual is below `tol` × ‖∇_w E‖. Algorithm: train T steps to w_T (no trajectory kept);
    v ≈ H⁻¹ ∇_w E by CG at w_T; ∇f = ∂_λ E − (∂_λ ∇_w J)ᵀ v. Exact when w_T minimises J and CG
    has converged; see the module docstring for when it is not. `compile`: the training steps'
    path, as for `reverse`.
    """

    def solve(apply, b):
        return conjugate_gradient(apply, b, iterations, tol)

    return _hessian_form(dynamics, s0, hp, steps, batch_at, outer, solve, compile)


def ift_neumann(
    dynamics: Dynamics,
    s0: InitialState,
    hp: HP,
    steps: int,
    batch_at: BatchStream,
    outer: Outer,
    alpha: float,
    iterations: int = 50,
    compile: bool | None = None,
) -> ImplicitHypergradient:
    """Implicit hypergradient, Hessian form, by a Neumann series: H⁻¹ ≈ α Σ_{k=0..K} (I − αH)^k.

    Inputs as for `reverse`, plus the step α (0 < α < 2/L) and K = `iterations` Hessian-vector
    products. Algorithm: train T steps to w_T; v = the series applied to ∇_w E at w_T;
    ∇f = ∂_λ E − (∂_λ ∇_w J)ᵀ v. `compile` as for `ift_cg`.
    """

    def solve(apply, b):
        return neumann(apply, b, iterations, alpha), iterations

    return _hessian_form(dynamics, s0, hp, steps, batch_at, outer, solve, compile)


def ift_fixed_point(
    dynamics: Dynamics,
    s0: InitialState,
    hp: HP,
    steps: int,
    batch_at: BatchStream,
    outer: Outer,
    iterations: int = 50,
    compile: bool | None = None,
) -> ImplicitHypergradient:
    """Implicit hypergradient, fixed-point form on Φ: (I − ∂Φ/∂s)ᵀ v = ∇_s E by the Neumann
    series v = Σ_{k=0..K} (∂Φ/∂sᵀ)^k ∇_s E (K = `iterations` vector-Jacobian products of Φ).

    Inputs as for `reverse`. Algorithm: train T steps to s_T; v at s_T; ∇f = ∂_λ E +
    (∂Φ/∂λ)ᵀ v. Needs no step size (Φ's own step sets the series' rate) and no Hessian: any
    stationary dynamics will do, momentum included. For gradient descent it is the Hessian
    Neumann series with α = η. `compile` as for `ift_cg`.
    """
    state = _last_state(dynamics, s0, hp, steps, batch_at, compile)
    s, unravel = _ravel(state)
    batch = batch_at(max(steps, 1))

    def residual(x, h):
        return x - _ravel(dynamics.step(unravel(x), h, batch))[0]  # zero at a fixed point

    def solve(apply, b):
        return neumann(apply, b, iterations, 1.0), iterations  # I − 1·(I − Aᵀ) = Aᵀ

    e_of_state = state_outer(dynamics, outer)
    value, hg, used = implicit(residual, s, hp, lambda x, h: e_of_state(unravel(x), h), solve)
    return ImplicitHypergradient(value, hg, state, used)


# The methods by the name strategies and the cost model use.
METHODS = {"cg": ift_cg, "neumann": ift_neumann, "fixed-point": ift_fixed_point}
