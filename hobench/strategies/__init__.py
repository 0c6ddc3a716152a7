"""Strategies: black-box (Optuna samplers and pruners) and gradient-based; importing registers
them."""

from hobench.strategies import (  # noqa: F401
    bilevel,
    blackbox,
    gradient,
    implicit,
    multifidelity,
    online,
    reference,
)
from hobench.strategies.base import Strategy

__all__ = ["Strategy"]
