"""The math: training dynamics and hypergradients (forward, reverse, online, implicit)."""

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
from hobench.hypergrad.implicit import (
    ImplicitHypergradient,
    ift_cg,
    ift_fixed_point,
    ift_neumann,
)
from hobench.hypergrad.reverse import reverse, reverse_sweep, unroll

__all__ = [
    "Dynamics",
    "ForwardState",
    "Hypergradient",
    "ImplicitHypergradient",
    "adam",
    "forward",
    "gd",
    "ift_cg",
    "ift_fixed_point",
    "ift_neumann",
    "momentum",
    "reparametrized",
    "reverse",
    "reverse_sweep",
    "scheduled_gd",
    "unroll",
]
