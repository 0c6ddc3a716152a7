"""Proof of life for the tasks: the reference rows on the embedded data, in one command.

`hobench references` prints hyper-cleaning's Oracle and Baseline test accuracy and the
auxiliary-target task's Vanilla accuracy (one training run at the paper's defaults), seeded.
"""

from __future__ import annotations

from hobench.registry import TASKS


def reference_rows(seed: int = 0, source: str = "embedded", data_dir: str | None = None) -> list:
    """(task, row, test accuracy) for the tasks' reference rows at their default sizes."""
    cleaning = TASKS.create("hypercleaning", seed=seed, source=source, data_dir=data_dir)
    rows = [("hypercleaning", name, row["test_acc"]) for name, row in cleaning.references().items()]
    aux = TASKS.create("auxtarget", seed=seed, source=source, data_dir=data_dir)
    rows.append(("auxtarget", "Vanilla", aux.evaluate(aux.default_config()).test_acc))
    return rows


def format_rows(rows: list) -> str:
    lines = [f"{'task':<15}{'row':<10}{'test accuracy':>14}"]
    lines += [f"{task:<15}{name:<10}{100 * acc:>13.2f}%" for task, name, acc in rows]
    return "\n".join(lines)
