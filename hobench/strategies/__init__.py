"""Strategies: black-box (Optuna samplers) and gradient-based; importing registers them."""

from hobench.strategies import blackbox, gradient, implicit, reference  # noqa: F401
from hobench.strategies.base import Strategy

__all__ = ["Strategy"]
