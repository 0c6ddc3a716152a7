"""Before any cell runs: every cell's budget must pay for one unit of its strategy's work.

A budget too small for one evaluation or one hypergradient would otherwise fail cell by cell,
after the data were loaded and the earlier cells had run. Each task is built once (at the
suite's first seed: unit costs depend on shapes, not on the seed) and each strategy asked for
its first unit (`Strategy.first_unit`).
"""

from __future__ import annotations

from hobench.harness.budget import Budget, BudgetError
from hobench.harness.measure import resolve_device
from hobench.harness.suite import Cell, SuiteError
from hobench.registry import STRATEGIES, TASKS


def check_budgets(cells: list[Cell], data_dir: str | None) -> None:
    """Raise BudgetError (one line naming the cell and the smallest workable value) if a cell's
    cost or step budget cannot pay for its strategy's first unit of work, and SuiteError (one
    line) if a cell's task or strategy cannot be built or cannot run together."""
    tasks: dict[str, object] = {}
    seen: set[tuple[str, str]] = set()
    for cell in cells:
        pair = (cell.task_id, cell.strategy_id)
        budget = Budget(**cell.budget)
        if pair in seen:
            continue
        seen.add(pair)
        try:
            if cell.task_id not in tasks:
                tasks[cell.task_id] = TASKS.create(
                    cell.task_kind,
                    seed=cell.seed,
                    device=resolve_device(cell.device),
                    data_dir=data_dir,
                    **cell.task_params,
                )
            task = tasks[cell.task_id]
            strategy = STRATEGIES.create(cell.strategy_kind, **cell.strategy_params)
            costs = task.cost_model()
            unit = strategy.first_unit(task, costs)
        except NotImplementedError:
            continue  # a task or strategy that cannot say: checked when the cell runs
        except (ValueError, TypeError) as exc:  # a task or pair that cannot run at all
            raise SuiteError(f"cell {cell.task_id}/{cell.strategy_id}: {exc}") from None
        if budget.cost is None and budget.steps is None:
            continue  # a clock alone: nothing to compare one unit with
        budget.price(costs.plain_run)
        error = budget.smallest_unit_error(*unit)
        if error is not None:
            raise BudgetError(f"cell {cell.task_id}/{cell.strategy_id}: {error}")
