"""Small pieces shared by the forward and reverse hypergradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from hobench.hypergrad.dynamics import HP, Dynamics, State

# E(params, hp) -> scalar validation loss; it may depend on hp directly.
Outer = Callable[[Any, HP], torch.Tensor]
# s_0 is either a fixed state or a function of the hyperparameters (then Z_0 = ∂s_0/∂λ ≠ 0).
InitialState = State | Callable[[HP], State]
# The batch of step t = 1..T; called again with the same t on the way back, it must return the
# same batch (replay), so stochastic streams must be seeded by t.
BatchStream = Callable[[int], Any]


class Hypergradient(NamedTuple):
    """f(λ) = E(s_T, λ) and its gradient with respect to each hyperparameter."""

    value: torch.Tensor
    grad: dict[str, torch.Tensor]
    final_state: State


def state_outer(dynamics: Dynamics, outer: Outer) -> Callable[[State, HP], torch.Tensor]:
    """E as a function of the whole state (it reads only the weights)."""
    return lambda state, hp: outer(dynamics.params(state), hp)


def initial_state(s0: InitialState, hp: HP) -> State:
    return s0(hp) if callable(s0) else s0


def detached(tree: Any) -> Any:
    return torch.utils._pytree.tree_map(lambda x: x.detach(), tree)
