"""The short-horizon bias of truncated reverse mode: how far the hypergradient through the last K
steps points from the full one, as K grows.

Truncation drops Σ_{t ≤ T−K} α_t B_t, the influence λ had on the early steps: a K-step
hypergradient sees only what λ does within its horizon (Wu et al., 2018, "Understanding
short-horizon bias in stochastic meta-optimization"). One backward sweep gives every K
(`reverse_sweep`), so the whole curve costs one full Reverse-HG.

The cosine is over all hyperparameters at once, each in the coordinate the task tunes: where
they live on different scales the largest entries dominate it, as they dominate a hyper-step.
"""

from __future__ import annotations

import math

import torch

from hobench.hypergrad.common import BatchStream, InitialState, Outer
from hobench.hypergrad.dynamics import HP, Dynamics
from hobench.hypergrad.reverse import reverse_sweep


def flat(grad: dict[str, torch.Tensor]) -> torch.Tensor:
    """A hypergradient's entries, all hyperparameters in order, as one float64 vector."""
    return torch.cat([g.detach().reshape(-1).to(torch.float64) for g in grad.values()])


def cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """cos ∠(a, b) = a·b / (‖a‖‖b‖) over every entry of two hypergradients; NaN when either is
    zero (no direction to compare)."""
    if list(a) != list(b):
        raise ValueError(f"different hyperparameters: {list(a)} and {list(b)}")
    x, y = flat(a), flat(b)
    norms = float(x.norm() * y.norm())
    return float(x @ y) / norms if norms > 0 else math.nan


def truncations(
    dynamics: Dynamics,
    s0: InitialState,
    hp: HP,
    steps: int,
    batch_at: BatchStream,
    outer: Outer,
    ks: list[int],
    compile: bool | None = None,
) -> dict[int, dict[str, torch.Tensor]]:
    """The K-step truncated hypergradient for each K in `ks` (1..T; K = T is the full one), from
    one backward sweep. Inputs (`compile` too) as for `reverse`."""
    if any(not 1 <= k <= steps for k in ks):
        raise ValueError(f"every K must be in 1..{steps}, got {ks}")
    wanted = set(ks)
    sweep = reverse_sweep(dynamics, s0, hp, steps, batch_at, outer, steps, compile)
    return {k: hg.grad for k, hg in enumerate(sweep) if k in wanted}


def horizon_bias(
    truncated: dict[int, dict[str, torch.Tensor]], full: dict[str, torch.Tensor]
) -> list[dict[str, float]]:
    """For each K: the cosine between the K-step truncated hypergradient and the full one, and
    the ratio of their norms."""
    full_norm = float(flat(full).norm())
    return [
        {
            "K": k,
            "cosine": cosine(grad, full),
            "norm_ratio": float(flat(grad).norm()) / full_norm if full_norm else math.nan,
        }
        for k, grad in sorted(truncated.items())
    ]
