"""Shared tasks; importing this package registers the built-in ones."""

from hobench.tasks import (  # noqa: F401
    auxtarget,
    featuredecay,
    hypercleaning,
    lrschedule,
    module,
    quadratic,
    ridge,
    tabulardecay,
)
from hobench.tasks.base import Evaluation, GradientProblem, HyperParam, Task

__all__ = ["Evaluation", "GradientProblem", "HyperParam", "Task"]
