"""Reverse-HG (paper Algorithm 1, eq. 12), with the sum running over every t = 1..T."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from hobench.hypergrad.common import (
    BatchStream,
    Hypergradient,
    InitialState,
    Outer,
    detached,
    initial_state,
    state_outer,
)
from hobench.hypergrad.compiled import compiled, use_compiled
from hobench.hypergrad.dynamics import HP, Dynamics, State


def unroll(
    dynamics: Dynamics,
    s0: State,
    hp: HP,
    steps: int,
    batch_at: BatchStream,
    keep_last: int,
    compile: bool | None = None,
) -> list[State]:
    """Run T steps without building a graph; keep only the last `keep_last` + 1 states.
    `compile`: the compiled step (see hobench.hypergrad.compiled); None: the default, compiled."""
    step = compiled(dynamics, "step") if use_compiled(compile) else dynamics.step
    states = [detached(s0)]
    hp = detached(hp)
    with torch.no_grad():
        for t in range(1, steps + 1):
            states.append(step(states[-1], hp, batch_at(t)))
            if len(states) > keep_last + 1:
                states.pop(0)
    return states


def _leaves_requiring_grad(tree) -> tuple[list[torch.Tensor], object]:
    leaves, spec = tree_flatten(tree)
    return [x.detach().requires_grad_() for x in leaves], spec


def _pullback(outputs, inputs: Sequence[torch.Tensor], cotangents=None) -> list[torch.Tensor]:
    """Σ cotangent · ∂outputs/∂input for each input, zeros where an input is unused. Outputs
    that depend on no input (a velocity that starts at zero whatever λ) contribute nothing;
    autograd would refuse them."""
    outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    cotangents = [None] * len(outputs) if cotangents is None else list(cotangents)
    used = [(o, c) for o, c in zip(outputs, cotangents, strict=True) if o.requires_grad]
    grads = [None] * len(inputs)
    if used:
        outs, cots = zip(*used, strict=True)
        grads = torch.autograd.grad(outs, inputs, cots, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)]


def step_vjp(
    dynamics: Dynamics, state: State, hp: HP, batch, alpha: State
) -> tuple[State, dict[str, torch.Tensor]]:
    """(α_t A_t, α_t B_t): one step recomputed at the stored s_{t-1}, then pulled back."""
    inputs, spec = _leaves_requiring_grad(state)
    hp_in = {k: v.detach().requires_grad_() for k, v in hp.items()}
    with torch.enable_grad():
        out = dynamics.step(tree_unflatten(inputs, spec), hp_in, batch)
        grads = _pullback(
            tree_flatten(out)[0], inputs + list(hp_in.values()), tree_flatten(alpha)[0]
        )
    alpha_prev = tree_unflatten(grads[: len(inputs)], spec)
    return alpha_prev, dict(zip(hp_in, grads[len(inputs) :], strict=True))


def reverse(
    dynamics: Dynamics,
    s0: InitialState,
    hp: HP,
    steps: int,
    batch_at: BatchStream,
    outer: Outer,
    truncate: int | None = None,
    compile: bool | None = None,
) -> Hypergradient:
    """Hypergradient of f(λ) = E(s_T, λ) by reverse mode over the training trajectory.

    Inputs: the dynamics Φ, the initial state s_0 (or λ ↦ s_0), hyperparameters λ, T = `steps`,
    the batch stream, E. With `truncate` = K only the last K steps are differentiated through
    (FAR-HO's truncated reverse: bias traded for cost; K = T is the full hypergradient).

    Algorithm: s_t = Φ_t(s_{t-1}, λ) for t = 1..T, storing the T+1 states (K+1 when truncated)
    and no autograd graph; α_T = ∇_s E(s_T); for t = T..1: g += α_t B_t, α_{t-1} = α_t A_t, each
    by recomputing the single step t at the stored s_{t-1}. Output: ∇f = g + α_0 Z_0 + ∂_λ E.

    `compile`: True runs the forward sweep and the per-step pullback compiled (the same numbers
    up to rounding, faster; see hobench.hypergrad.compiled), False eager; None (the default):
    compiled unless HOBENCH_COMPILE=0 (see hobench.hypergrad.compiled.use_compiled).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if truncate is not None and not 1 <= truncate <= steps:
        raise ValueError(f"truncate must be in 1..{steps}, got {truncate}")
    # Each item is one step further back; the last is the answer, and only it is kept.
    sweep = reverse_sweep(dynamics, s0, hp, steps, batch_at, outer, truncate or steps, compile)
    return deque(sweep, maxlen=1)[0]


def reverse_sweep(
    dynamics: Dynamics,
    s0: InitialState,
    hp: HP,
    steps: int,
    batch_at: BatchStream,
    outer: Outer,
    keep: int,
    compile: bool | None = None,
) -> Iterator[Hypergradient]:
    """The backward sweep of `reverse`, yielding the hypergradient truncated to K = 0, 1, ..,
    `keep` steps as it goes: item K is ∂_λ E + Σ_{t=T-K+1..T} α_t B_t, exactly `reverse` with
    truncate = K, and when `keep` = T the last item also holds α_0 Z_0 (the full hypergradient).
    One sweep thus gives every truncation at the cost of the longest. `compile`: as for
    `reverse`."""
    with torch.no_grad():
        start = initial_state(s0, hp)
    fast = use_compiled(compile)
    states = unroll(dynamics, start, hp, steps, batch_at, keep_last=keep, compile=fast)
    final_state = states[-1]

    # α_T = ∇_s E(s_T), and the direct term ∂_λ E starts the sum.
    final, spec = _leaves_requiring_grad(final_state)
    hp_in = {k: v.detach().requires_grad_() for k, v in hp.items()}
    with torch.enable_grad():
        value = state_outer(dynamics, outer)(tree_unflatten(final, spec), hp_in)
        grads = _pullback(value, final + list(hp_in.values()))
    value = value.detach()
    alpha = tree_unflatten(grads[: len(final)], spec)
    total = {k: g.detach() for k, g in zip(hp, grads[len(final) :], strict=True)}

    first_t = steps - keep + 1  # earliest step differentiated through
    pullback = compiled(dynamics, "pullback") if fast else None
    for t in range(steps, first_t - 1, -1):
        yield Hypergradient(value, total, final_state)
        states.pop()  # s_t is no longer needed; s_{t-1} is now last
        if pullback is None:
            alpha, step_grad = step_vjp(dynamics, states[-1], hp, batch_at(t), alpha)
        else:
            alpha, step_grad = pullback(states[-1], detached(hp), batch_at(t), alpha)
        # A new dict: the hypergradients yielded before keep theirs.
        total = {k: total[k] + step_grad[k].detach() for k in total}

    # α_0 Z_0, when s_0 depends on λ and the whole trajectory was differentiated.
    if callable(s0) and keep == steps:
        hp_in = {k: v.detach().requires_grad_() for k, v in hp.items()}
        with torch.enable_grad():
            start_leaves = tree_flatten(s0(hp_in))[0]
            grads = _pullback(start_leaves, list(hp_in.values()), tree_flatten(alpha)[0])
        total = {k: total[k] + g.detach() for k, g in zip(hp, grads, strict=True)}
    yield Hypergradient(value, total, final_state)
