"""Toy tasks and strategies for the harness tests, registered on import.

Worker processes import this module through HOBENCH_PLUGINS=tests.harness_toys (with the
repository root on PYTHONPATH), so the toys exist there too. Everything is seeded, so two runs
give equal numbers.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch

from hobench.harness.budget import Budget
from hobench.harness.cost import CostModel
from hobench.harness.recorder import Recorder
from hobench.hypergrad import gd
from hobench.registry import STRATEGIES, TASKS
from hobench.strategies.base import Strategy
from hobench.tasks.base import Evaluation, GradientProblem, HyperParam, Task, Training

REPO_ROOT = str(Path(__file__).resolve().parent.parent)
STEPS_PER_EVALUATION = 10
EVALUATION_FLOPS = 1000  # what the toy says one evaluation costs: one plain run


def plugin_env() -> dict[str, str]:
    """Environment variables that make worker (and CLI) processes import these toys."""
    path = os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))
    return {"HOBENCH_PLUGINS": "tests.harness_toys", "PYTHONPATH": path}


def subprocess_env() -> dict[str, str]:
    return {**os.environ, **plugin_env()}


@TASKS.register("toy-quad")
class ToyQuadratic(Task):
    """A quadratic validation loss in one hyperparameter x, optimum 0.3 + 0.01 * seed."""

    def __init__(
        self,
        *,
        seed: int = 0,
        device: str = "cpu",
        data_dir: str | None = None,
        scale: float = 1.0,
        label: str = "toy",
        weights: tuple = (1.0,),
        extra: dict | None = None,
    ) -> None:
        self.optimum = 0.3 + 0.01 * seed
        self.scale = scale

    def space(self) -> list[HyperParam]:
        return [HyperParam("x", 0.0, 1.0, 0.5)]

    def steps_per_evaluation(self) -> int:
        return STEPS_PER_EVALUATION

    def cost_model(self) -> CostModel:
        return CostModel.fixed(EVALUATION_FLOPS)

    def evaluate(self, config: dict[str, float]) -> Evaluation:
        loss = self.scale * (config["x"] - self.optimum) ** 2
        return Evaluation(val_loss=loss, val_acc=1 - loss, test_acc=1 - 2 * loss, steps=10)

    def regret(self, val_loss: float) -> float | None:
        return val_loss  # f(λ*) = 0


@TASKS.register("toy-linear")
class ToyLinear(Task):
    """Least squares on 8 × 4 inputs by gradient descent from w = 0 for `steps` steps, the step
    size `lr` searched: small enough to count its FLOPs by hand (a step is two 8 × 4
    matrix-vector products, 128 FLOPs; a validation pass one, 64)."""

    learning_rate = "lr"
    LR_RANGE = (0.01, 0.5)

    def __init__(
        self, *, seed: int = 0, device: str = "cpu", data_dir: str | None = None, steps: int = 27
    ) -> None:
        gen = torch.Generator().manual_seed(seed)
        w_true = torch.randn(4, generator=gen, dtype=torch.float64)

        def sample():
            X = torch.randn(8, 4, generator=gen, dtype=torch.float64)
            return X, X @ w_true + 0.3 * torch.randn(8, generator=gen, dtype=torch.float64)

        self.train, self.val = sample(), sample()
        self.steps = steps
        self.dynamics = gd(self._inner, lr="lr")

    def _inner(self, w, hp, batch):
        X, y = self.train
        return 0.5 * ((X @ w - y) ** 2).mean()

    def _outer(self, w, hp=None):
        X, y = self.val
        return 0.5 * ((X @ w - y) ** 2).mean()

    def _score(self, w) -> Evaluation:
        return Evaluation(val_loss=float(self._outer(w)), steps=self.steps)

    def _params0(self):
        return torch.zeros(4, dtype=torch.float64)

    def space(self) -> list[HyperParam]:
        return [HyperParam("lr", *self.LR_RANGE, default=0.05, log=True)]

    def steps_per_evaluation(self) -> int:
        return self.steps

    def training(self) -> Training:
        return Training(
            dynamics=self.dynamics,
            params0=self._params0,
            hp=lambda config: {"lr": torch.tensor(config["lr"], dtype=torch.float64)},
            steps=self.steps,
            batch_at=lambda t: None,
            score=self._score,
            loss=self._inner,
        )

    def gradient_problem(self, start: str = "default") -> GradientProblem:
        return GradientProblem(
            dynamics=self.dynamics,
            params0=self._params0,
            hp0={"lr": torch.tensor(0.05, dtype=torch.float64)},
            steps=self.steps,
            batch_at=lambda t: None,
            outer=self._outer,
            project=lambda hp: {"lr": hp["lr"].clamp(*self.LR_RANGE)},
            evaluate=lambda w, hp: self._score(w),
        )


class _Toy(Strategy):
    def evaluate(self, task: Task, config: dict, budget: Budget, recorder: Recorder) -> Evaluation:
        ev = task.evaluate(config)
        budget.price(EVALUATION_FLOPS)
        budget.spend(EVALUATION_FLOPS, ev.steps)
        recorder.point(config, ev.val_loss, ev.val_acc, ev.test_acc)
        return ev


@STRATEGIES.register("toy-random")
class ToyRandom(_Toy):
    """Evaluates `points` random configurations (fewer if the budget runs out)."""

    def __init__(
        self, points: int = 4, sleep: float = 0.0, allocate_mb: int = 0, verbose: bool = False
    ) -> None:
        self.points, self.sleep, self.allocate_mb = points, sleep, allocate_mb

    def run(self, task, budget, rng, recorder) -> None:
        ballast = np.ones(self.allocate_mb * 2**20 // 8) if self.allocate_mb else None
        best = None
        for _ in range(self.points):
            budget.price(EVALUATION_FLOPS)
            if not budget.fits(EVALUATION_FLOPS, task.steps_per_evaluation()):
                break
            time.sleep(self.sleep)
            config = {"x": float(rng.uniform())}
            ev = self.evaluate(task, config, budget, recorder)
            if best is None or ev.val_loss < best[0]:
                best = (ev.val_loss, config)
        recorder.finish(**task.finalize_config(best[1]))
        del ballast


@STRATEGIES.register("toy-raise")
class ToyRaise(_Toy):
    """Evaluates one point, then raises."""

    def run(self, task, budget, rng, recorder) -> None:
        self.evaluate(task, {"x": 0.5}, budget, recorder)
        raise RuntimeError("planted failure\nsecond line that must not appear")


@STRATEGIES.register("toy-nan")
class ToyNaN(_Toy):
    """Finishes with a NaN validation loss."""

    def run(self, task, budget, rng, recorder) -> None:
        self.evaluate(task, {"x": 0.5}, budget, recorder)
        recorder.finish(val_loss=float("nan"), test_acc=0.5)


@STRATEGIES.register("toy-no-loss")
class ToyNoLoss(_Toy):
    """Finishes with val_loss None: a strategy's bug, not a divergence."""

    def run(self, task, budget, rng, recorder) -> None:
        self.evaluate(task, {"x": 0.5}, budget, recorder)
        recorder.finish(val_loss=None, test_acc=0.5)


@STRATEGIES.register("toy-kill")
class ToyKill(_Toy):
    """Kills its own process, as the out-of-memory killer would."""

    def run(self, task, budget, rng, recorder) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


@STRATEGIES.register("toy-full-disk")
class ToyFullDisk(_Toy):
    """Evaluates one point, then meets a full disk writing a scratch file (as a cell's shared
    values or its record would)."""

    def run(self, task, budget, rng, recorder) -> None:
        self.evaluate(task, {"x": 0.5}, budget, recorder)
        raise OSError(errno.ENOSPC, "No space left on device", "scratch.json")


@STRATEGIES.register("toy-nice")
class ToyNice(_Toy):
    """Evaluates one point, then fails unless its process runs at `niceness` (the runner's)."""

    def __init__(self, niceness: int = 0) -> None:
        self.niceness = niceness

    def run(self, task, budget, rng, recorder) -> None:
        self.evaluate(task, {"x": 0.5}, budget, recorder)
        if os.nice(0) != self.niceness:
            raise RuntimeError(f"the cell ran at niceness {os.nice(0)}, not {self.niceness}")
        recorder.finish(**task.finalize_config({"x": 0.5}))


@STRATEGIES.register("toy-frozen")
class ToyFrozen(_Toy):
    """Evaluates one point, then fails unless what its process imported before the cell is
    frozen out of the garbage collector's sight (the zygote's gc.freeze)."""

    def run(self, task, budget, rng, recorder) -> None:
        self.evaluate(task, {"x": 0.5}, budget, recorder)
        if gc.get_freeze_count() < 100_000:  # torch alone is ~300 000 objects
            raise RuntimeError(f"only {gc.get_freeze_count()} objects frozen in the cell")
        recorder.finish(**task.finalize_config({"x": 0.5}))


@STRATEGIES.register("toy-hold")
class ToyHold(_Toy):
    """Evaluates one point, writes `<folder>/started`, then waits while `<folder>/hold` exists:
    a cell a test can catch mid-run (to lose its node, or to press Ctrl-C)."""

    def __init__(self, folder: str = "", timeout: float = 120.0) -> None:
        self.folder, self.timeout = Path(folder), timeout

    def run(self, task, budget, rng, recorder) -> None:
        self.evaluate(task, {"x": 0.5}, budget, recorder)
        (self.folder / "started").touch()
        deadline = time.monotonic() + self.timeout
        while (self.folder / "hold").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        recorder.finish(**task.finalize_config({"x": 0.5}))
