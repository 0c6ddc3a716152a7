"""The math: training dynamics and exact hypergradients (forward, reverse, online)."""

from hobench.hypergrad.common import Hypergradient
from hobench.hypergrad.dynamics import (
    Dynamics,
    adam,
    gd,
    momentum,
    reparametrized,
    scheduled_gd,
)
from hobench.hypergrad.forward import ForwardState, forward
from hobench.hypergrad.reverse import reverse, unroll

__all__ = [
    "Dynamics",
    "ForwardState",
    "Hypergradient",
    "adam",
    "forward",
    "gd",
    "momentum",
    "reparametrized",
    "reverse",
    "scheduled_gd",
    "unroll",
]
