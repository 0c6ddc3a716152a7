"""Strategies: black-box (Optuna samplers and pruners) and gradient-based; importing registers
them."""

from hobench.strategies import blackbox, gradient, multifidelity, online, reference  # noqa: F401
from hobench.strategies.base import Strategy

__all__ = ["Strategy"]
