"""Shared tasks; importing this package registers the built-in ones."""

from hobench.tasks import auxtarget, hypercleaning, ridge  # noqa: F401
from hobench.tasks.base import Evaluation, GradientProblem, HyperParam, Task

__all__ = ["Evaluation", "GradientProblem", "HyperParam", "Task"]
