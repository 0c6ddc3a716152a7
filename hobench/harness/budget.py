"""The one budget every strategy runs under: wall-clock seconds and/or inner training steps."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


class BudgetError(ValueError):
    """A budget that cannot be run (negative, zero, or smaller than one unit of work)."""


@dataclass
class Budget:
    """Wall-clock seconds and/or inner steps, and the meter that spends them.

    One inner step is one application of the training map Φ, counted the same way for every
    strategy. `cost_steps` also counts what a step really cost in step-equivalents (a forward-mode
    step over m directions, a reverse step), so tables can be read per step and per second.
    """

    seconds: float | None = None
    steps: int | None = None
    steps_used: int = 0
    cost_steps: float = 0.0
    _start: float | None = field(default=None, repr=False)
    _stopped_at: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.seconds is None and self.steps is None:
            raise BudgetError("a budget needs `seconds` or `steps` (or both)")
        if self.seconds is not None and not (self.seconds > 0 and math.isfinite(self.seconds)):
            raise BudgetError(f"budget seconds must be a positive number, got {self.seconds!r}")
        if self.steps is not None and (int(self.steps) != self.steps or self.steps <= 0):
            raise BudgetError(f"budget steps must be a positive integer, got {self.steps!r}")

    def start(self) -> Budget:
        self._start = time.perf_counter()
        return self

    def stop(self) -> None:
        """The search is over: freeze `elapsed` (a final protocol may still run, unbudgeted)."""
        if self._stopped_at is None:
            self._stopped_at = self.elapsed

    @property
    def elapsed(self) -> float:
        if self._stopped_at is not None:
            return self._stopped_at
        if self._start is None:
            self.start()
        return time.perf_counter() - self._start

    def fits(self, steps: int) -> bool:
        """Whether `steps` more inner steps may start now without overrunning the step budget."""
        if self.steps is not None and self.steps_used + steps > self.steps:
            return False
        return not self.out_of_time()

    def out_of_time(self) -> bool:
        return self.seconds is not None and self.elapsed >= self.seconds

    def exhausted(self) -> bool:
        return self.out_of_time() or (self.steps is not None and self.steps_used >= self.steps)

    def spend(self, steps: int, cost: float | None = None) -> None:
        """Record `steps` applications of Φ that cost `cost` step-equivalents (default: `steps`)."""
        self.steps_used += steps
        self.cost_steps += steps if cost is None else cost

    @property
    def remaining_steps(self) -> int | None:
        return None if self.steps is None else self.steps - self.steps_used

    @property
    def overrun(self) -> float:
        """Seconds spent past the wall-clock budget (0 when within it or when there is none)."""
        return 0.0 if self.seconds is None else max(0.0, self.elapsed - self.seconds)

    def as_dict(self) -> dict:
        return {"seconds": self.seconds, "steps": self.steps}
