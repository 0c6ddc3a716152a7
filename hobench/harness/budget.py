"""The one budget every strategy runs under: cost, wall-clock seconds and/or inner steps.

`cost` is floating-point work in plain-training equivalents (see `hobench.harness.cost`): the
same on every machine and under any load, so a seeded search under a cost budget is
reproducible bit for bit. `seconds` is wall-clock; `steps` counts applications of Φ (a
hypergradient step counts one, whatever it costs). Several may be set: the first reached ends
the search. Strategies work in units (one evaluation, one hypergradient, one RTHO chunk): a
unit starts only if it fits every limit, so no limit is exceeded — except seconds, which a
unit can overrun when it takes longer than the last one did; that overrun is recorded.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

LIMITS = ("cost", "seconds", "steps")


class BudgetError(ValueError):
    """A budget that cannot be run (missing, negative, non-finite or below one unit of work)."""


@dataclass
class Budget:
    """The limits and the meter that spends them."""

    cost: float | None = None
    seconds: float | None = None
    steps: int | None = None
    flops_used: int = 0
    steps_used: int = 0
    units: int = 0
    plain_run_flops: int | None = None
    unit_seconds: list[float] = field(default_factory=list, repr=False)
    _start: float | None = field(default=None, repr=False)
    _stopped_at: float | None = field(default=None, repr=False)
    _paused_s: float = field(default=0.0, repr=False)
    _last_spend_at: float = field(default=0.0, repr=False)
    _batch_left: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.cost is None and self.seconds is None and self.steps is None:
            raise BudgetError("a budget needs `cost`, `seconds` or `steps` (or several)")
        for name in ("cost", "seconds"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise BudgetError(f"budget {name} must be a positive finite number, got {value!r}")
        if self.steps is not None and (int(self.steps) != self.steps or self.steps <= 0):
            raise BudgetError(f"budget steps must be a positive integer, got {self.steps!r}")

    # --- the clock ----------------------------------------------------------------------------
    def start(self) -> Budget:
        self._start = time.perf_counter()
        return self

    def stop(self) -> None:
        """The search is over: freeze `elapsed` (a final protocol may still run, unbudgeted)."""
        if self._stopped_at is None:
            self._stopped_at = self.elapsed

    @property
    def elapsed(self) -> float:
        """Seconds of search so far, excluding paused bookkeeping (FLOP counting)."""
        if self._stopped_at is not None:
            return self._stopped_at
        if self._start is None:
            self.start()
        return time.perf_counter() - self._start - self._paused_s

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Bookkeeping that is not search (counting a unit's FLOPs) stays off the clock."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._paused_s += time.perf_counter() - started

    # --- the meter ----------------------------------------------------------------------------
    def price(self, plain_run_flops: int) -> None:
        """Set the currency: the FLOPs of one plain training run of the task."""
        if plain_run_flops <= 0:
            raise BudgetError(f"a plain training run must cost > 0 FLOPs, got {plain_run_flops}")
        self.plain_run_flops = int(plain_run_flops)

    def _flop_limit(self) -> float:
        if self.plain_run_flops is None:
            raise BudgetError("a cost budget needs price(plain_run_flops) before spending")
        # The relative 1e-9 absorbs the rounding of cost × FLOPs (0.57 × 100 = 56.999…).
        return self.cost * self.plain_run_flops * (1 + 1e-9)

    @property
    def cost_used(self) -> float | None:
        """Work spent so far in plain-training equivalents (None before the budget is priced)."""
        return None if self.plain_run_flops is None else self.flops_used / self.plain_run_flops

    def fits(self, flops: int, steps: int = 0, units: int = 1) -> bool:
        """Whether a unit of `flops` and `steps` inner steps may start now: within the cost and
        step limits, and — under a seconds limit — not predicted (from the duration of the last
        unit) to end past it. `units` > 1: a batch of that many units run together (a
        population), `flops` and `steps` its total, predicted to take `units` times the last
        unit's seconds (a batch's seconds are shared among its units, see `spend`)."""
        if self.cost is not None and self.flops_used + flops > self._flop_limit():
            return False
        if self.steps is not None and self.steps_used + steps > self.steps:
            return False
        if self.seconds is not None:
            predicted = units * self.unit_seconds[-1] if self.unit_seconds else 0.0
            if self.elapsed + predicted > self.seconds:
                return False
        return True

    def spend(self, flops: int, steps: int = 0, batch: int = 1) -> None:
        """Record one finished unit of `flops` FLOPs and `steps` applications of Φ. `batch` > 1:
        the unit ran together with batch − 1 others (a population trained as one computation),
        and `spend` is called for each of them right after the batch, each with its own FLOPs
        and steps; the batch's seconds are shared equally, so `unit_seconds` stays per unit."""
        if self._batch_left:  # a later unit of a batch its first `spend` timed
            self._batch_left -= 1
            self.unit_seconds.append(self.unit_seconds[-1])
        else:
            now = self.elapsed
            self.unit_seconds.append((now - self._last_spend_at) / batch)
            self._last_spend_at = now
            self._batch_left = batch - 1
        self.flops_used += int(flops)
        self.steps_used += int(steps)
        self.units += 1

    def smallest_unit_error(self, flops: int, steps: int, what: str) -> BudgetError | None:
        """The error to raise when not even one unit fits an empty budget, else None."""
        if self.cost is not None and flops > self._flop_limit():
            need = flops / self.plain_run_flops
            workable = math.ceil(need * 100) / 100
            while workable * self.plain_run_flops * (1 + 1e-9) < flops:  # never undercut it
                workable += 0.01
            return BudgetError(
                f"cost budget {self.cost:g} is below one {what} ({need:.4g} plain runs); "
                f"set cost >= {workable:.2f}"
            )
        if self.steps is not None and steps > self.steps:
            return BudgetError(
                f"step budget {self.steps} is below one {what} ({steps} steps); "
                f"set steps >= {steps}"
            )
        return None

    @property
    def overrun(self) -> float:
        """Seconds spent past the wall-clock budget (0 when within it or when there is none)."""
        return 0.0 if self.seconds is None else max(0.0, self.elapsed - self.seconds)

    def unit_median_s(self) -> float | None:
        return statistics.median(self.unit_seconds) if self.unit_seconds else None
