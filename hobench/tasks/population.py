"""Population training: k configurations of one `Training` run as one vmapped computation.

Black-box strategies that propose configurations independently (random, QMC, grid) can train a
batch of k of them together. Every configuration starts from the same weights and reads the
same batches; only its hyperparameters differ. So the k states are stacked on a new leading
dimension, the hyperparameter tensors likewise, and each of the T steps is one call of
`torch.func.vmap(dynamics.step, in_dims=(0, 0, None))(states, hps, batch)`: the batch is
shared. Each configuration's trained weights are then unstacked and scored on their own.

The result is each configuration's own training run, reordered into batched kernels: in float64
it agrees with `Task.evaluate` to rounding (a batched matrix product sums in another order than
k separate ones, so the results are not bit-identical — see tests/test_population.py for the
tolerances). A configuration whose run diverges gets NaN or inf in its own slice only, so it is
a failed `Evaluation` while the others are scored as usual.

Where a task's step cannot be vmapped (an operation without a batching rule, data-dependent
control flow on a batched value), `evaluate_population` says why once, as a warning, and
evaluates the configurations one by one, with the same results as `Task.evaluate`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.func import vmap
from torch.utils._pytree import tree_map

from hobench.tasks.base import Evaluation, Task, Training

Config = dict[str, float]


def _stack(trees: Sequence[Any]) -> Any:
    """k pytrees of the same structure → one pytree of tensors with a leading k dimension."""
    return tree_map(lambda *leaves: torch.stack(leaves), *trees)


def _unstack(tree: Any, k: int) -> list[Any]:
    return [tree_map(lambda leaf, i=i: leaf[i], tree) for i in range(k)]


def one_by_one(task: Task, configs: Sequence[Config], evaluate: Callable | None = None):
    """Each configuration evaluated on its own; a numerical blow-up fails that one only."""
    evaluate = evaluate or task.evaluate
    out = []
    for config in configs:
        try:
            out.append(evaluate(config))
        except (FloatingPointError, OverflowError):
            out.append(Evaluation(val_loss=float("nan")))
    return out


def train_population(run: Training, configs: Sequence[Config]) -> list[Any]:
    """T steps of `run` for every configuration at once; the trained weights of each."""
    k = len(configs)
    hps = [run.hp(config) for config in configs]
    params0 = run.params0()  # the same for every configuration: built once, stacked k times
    state = _stack([run.dynamics.init(params0, hp) for hp in hps])
    hp = _stack(hps)
    step = vmap(run.dynamics.step, in_dims=(0, 0, None))
    with torch.no_grad():
        for t in range(1, run.steps + 1):
            state = step(state, hp, run.batch_at(t))
    return _unstack(run.dynamics.params(state), k)


def _score(run: Training, params: Any) -> Evaluation:
    """`run.score`, as `Task.evaluate` scores (diverged weights score a NaN or inf validation
    loss: a failed evaluation), a blow-up raised while scoring failing this one only."""
    try:
        return run.score(params)
    except (FloatingPointError, OverflowError):
        return Evaluation(val_loss=float("nan"), steps=run.steps)


# Tasks (by class) whose step could not be vmapped, and why: said once per class and process.
_UNBATCHABLE: dict[type, str] = {}


def evaluate_population(task: Task, configs: Sequence[Config]) -> list[Evaluation]:
    """`[task.evaluate(c) for c in configs]`, trained as one vmapped computation where the task
    describes a `Training` (one by one where it does not, or where its step cannot be
    vmapped)."""
    configs = list(configs)
    own_evaluate = type(task).evaluate is not Task.evaluate  # not (only) its `Training`
    if len(configs) <= 1 or own_evaluate or type(task) in _UNBATCHABLE:
        return one_by_one(task, configs)
    try:
        run = task.training()
    except NotImplementedError:  # the task overrides `evaluate` only
        return one_by_one(task, configs)
    try:
        trained = train_population(run, configs)
    except (FloatingPointError, OverflowError):  # a blow-up raised: find whose, one by one
        return one_by_one(task, configs)
    except Exception as exc:  # no batching rule, a batched value in control flow, ...
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        _UNBATCHABLE[type(task)] = reason
        warnings.warn(
            f"task {task.name!r}: its training step cannot be vmapped ({reason}); "
            "its populations are evaluated one by one",
            RuntimeWarning,
            stacklevel=2,
        )
        return one_by_one(task, configs)
    return [_score(run, params) for params in trained]
