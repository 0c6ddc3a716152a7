"""Forward-HG (paper Algorithm 2) and its online form for RTHO.

Z_t = ds_t/dλ is carried as a pytree shaped like the state with a leading axis of m tangent
directions, one per scalar hyperparameter entry. One step is `jvp` of Φ along (Z_{t-1}, e_j),
batched over j with `vmap`: the primal is computed once and the m tangents together, giving
A_t Z_{t-1} + B_t. No trajectory is stored; memory is O(|s|·m) whatever T is.
"""

from __future__ import annotations

import torch
from torch.func import grad_and_value, jvp, vmap
from torch.utils._pytree import tree_leaves, tree_map

from hobench.hypergrad.common import (
    BatchStream,
    Hypergradient,
    InitialState,
    Outer,
    detached,
    state_outer,
)
from hobench.hypergrad.compiled import compiled, tangent_step_of, use_compiled
from hobench.hypergrad.dynamics import HP, Dynamics


def hp_basis(hp: HP) -> dict[str, torch.Tensor]:
    """The m unit tangents e_j, laid out per hyperparameter with a leading axis of size m."""
    sizes = [v.numel() for v in hp.values()]
    m = sum(sizes)
    basis, offset = {}, 0
    for (name, v), n in zip(hp.items(), sizes, strict=True):
        e = torch.zeros(m, n, dtype=v.dtype, device=v.device)
        e[offset : offset + n] = torch.eye(n, dtype=v.dtype, device=v.device)
        basis[name] = e.reshape(m, *v.shape)
        offset += n
    return basis


def _split(flat_grad: torch.Tensor, hp: HP) -> dict[str, torch.Tensor]:
    """Lay a length-m gradient out in the shapes of the hyperparameters."""
    out, offset = {}, 0
    for name, v in hp.items():
        out[name] = flat_grad[offset : offset + v.numel()].reshape(v.shape)
        offset += v.numel()
    return out


class ForwardState:
    """s_t and Z_t advanced together; λ may change between steps without resetting either.

    This is the online object RTHO drives: `advance` one step at a time, `hypergradient` at any
    t gives ∇_s E(s_t) Z_t + ∂_λ E, and `hp` may be reassigned between steps (Z is kept).

    `compile`: True takes the fast path: `advance` by the compiled tangent step (see
    hobench.hypergrad.compiled), and `hypergradient` as one gradient of E contracted with Z
    (cost independent of m) instead of m jvps of E (eager forward mode multiplies a zero
    tangent as large as the validation data through E, once per column). Both give the same
    number up to rounding. False: the eager path; None (the default): the compiled path unless
    HOBENCH_COMPILE=0 (see hobench.hypergrad.compiled.use_compiled).
    """

    def __init__(
        self, dynamics: Dynamics, s0: InitialState, hp: HP, compile: bool | None = None
    ) -> None:
        self.dynamics = dynamics
        self.fast = use_compiled(compile)
        if self.fast:
            self._tangent_step = compiled(dynamics, "tangent_step")
        else:
            self._tangent_step = tangent_step_of(dynamics)
        self.hp = {k: v.detach() for k, v in hp.items()}
        self.basis = hp_basis(self.hp)
        self.t = 0
        if callable(s0):
            # Z_0 = ∂s_0/∂λ along each unit tangent.
            def start(tangent):
                return jvp(s0, (self.hp,), (tangent,))

            s_batched, z = vmap(start)(self.basis)
            self.state = tree_map(lambda x: x[0], s_batched)
            self.z = z
        else:
            self.state = detached(s0)
            m = next(iter(self.basis.values())).shape[0]
            self.z = tree_map(
                lambda x: torch.zeros(m, *x.shape, dtype=x.dtype, device=x.device), self.state
            )
        self.state, self.z = detached(self.state), detached(self.z)

    @property
    def m(self) -> int:
        return next(iter(self.basis.values())).shape[0]

    def advance(self, batch) -> None:
        """s_t = Φ_t(s_{t-1}, λ);  Z_t = A_t Z_{t-1} + B_t."""
        state, z = self._tangent_step(self.state, self.z, detached(self.hp), self.basis, batch)
        self.state, self.z = detached(state), detached(z)
        self.t += 1

    def hypergradient(self, outer: Outer) -> Hypergradient:
        """∇f = ∇_s E(s_t) Z_t + ∂_λ E, each column by one jvp of E (on the fast path: one
        gradient (∇_s E, ∂_λ E), then ∇_s E Z_t column by column)."""
        e_of_state = state_outer(self.dynamics, outer)
        if self.fast:
            (grad_s, grad_hp), value = grad_and_value(e_of_state, argnums=(0, 1))(
                self.state, self.hp
            )
            flat_grad = torch.cat([grad_hp[k].reshape(-1) for k in self.hp])
            for g, z in zip(tree_leaves(grad_s), tree_leaves(self.z), strict=True):
                flat_grad = flat_grad + z.reshape(self.m, -1) @ g.reshape(-1)
            return Hypergradient(value.detach(), _split(flat_grad.detach(), self.hp), self.state)

        def directional(z, e):
            return jvp(e_of_state, (self.state, self.hp), (z, e))

        values, flat_grad = vmap(directional)(self.z, self.basis)
        return Hypergradient(values[0].detach(), _split(flat_grad.detach(), self.hp), self.state)


def forward(
    dynamics: Dynamics,
    s0: InitialState,
    hp: HP,
    steps: int,
    batch_at: BatchStream,
    outer: Outer,
    compile: bool | None = None,
) -> Hypergradient:
    """Hypergradient of f(λ) = E(s_T, λ) by forward mode.

    Inputs as for `reverse`. Algorithm: Z_0 = ∂s_0/∂λ; for t = 1..T: s_t = Φ_t(s_{t-1}, λ),
    Z_t = A_t Z_{t-1} + B_t; output ∇f = ∇_s E(s_T) Z_T + ∂_λ E. Time grows with m; memory does
    not grow with T. `compile` as for `reverse` (the compiled tangent step).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    carried = ForwardState(dynamics, s0, hp, compile)
    for t in range(1, steps + 1):
        carried.advance(batch_at(t))
    return carried.hypergradient(outer)
