"""Parameter domains: what values a task's or strategy's suite parameter may take.

A class declares them once, `domains = {"steps": Interval(1, integer=True), ...}`, and may add
the checks that involve several parameters in a `check_params` classmethod raising ParamError.
The suite validator reads both, so a bad value is one line before any cell runs instead of a
failure (or an endless loop) in every cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class ParamError(ValueError):
    """A parameter outside its domain: the parameter's name, the problem and the fix."""

    def __init__(self, name: str, problem: str, fix: str) -> None:
        super().__init__(f"{name}: {problem}; {fix}")
        self.name, self.problem, self.fix = name, problem, fix


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Interval:
    """A number in [low, high] (an end of None: unbounded; `open_low`: low excluded)."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    open_low: bool = False
    meaning: str = ""  # e.g. "0 takes the task's value", shown in the fix

    def problem(self, value: Any) -> str | None:
        if not _number(value) or (self.integer and not isinstance(value, int)):
            return f"expected {'an integer' if self.integer else 'a number'}, got {value!r}"
        if not math.isfinite(value):
            return f"not a finite number: {value!r}"
        below = self.low is not None and (value <= self.low if self.open_low else value < self.low)
        if below or (self.high is not None and value > self.high):
            return f"{value!r} is out of range"
        return None

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None and not self.open_low:
            text = f"{kind} in {self.low}..{self.high}"
        else:
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.open_low else '>='} {self.low}")
            if self.high is not None:
                bounds.append(f"<= {self.high}")
            text = " ".join([kind, " and ".join(bounds)]).strip()
        return f"{text} ({self.meaning})" if self.meaning else text


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values."""

    options: tuple[Any, ...]

    def problem(self, value: Any) -> str | None:
        return None if value in self.options else f"unknown value {value!r}"

    def describe(self) -> str:
        return "one of " + ", ".join(repr(option) for option in self.options)


Domain = Interval | Choice


def check(cls: type, params: dict[str, Any]) -> None:
    """Check `params` (every parameter, defaults included) against `cls.domains`, then
    `cls.check_params`; raise ParamError on the first problem. Classes that declare nothing
    (plugins written before domains existed) are checked when they run."""
    for name, domain in getattr(cls, "domains", {}).items():
        if name in params and params[name] is not None:
            problem = domain.problem(params[name])
            if problem is not None:
                raise ParamError(name, problem, f"use {domain.describe()}")
    check_params = getattr(cls, "check_params", None)
    if check_params is not None:
        check_params(params)
