"""A black-box task with a known optimum, so every strategy is scored by its regret."""

from __future__ import annotations

import numpy as np

from hobench.harness.cost import CostModel
from hobench.tasks.base import Evaluation, HyperParam, Task

# What one evaluation costs, in FLOPs: the currency budgets are spent in. A task without a
# differentiable inner problem states it; hobench counts it for tasks that have one.
EVALUATION_FLOPS = 10_000
STEPS = 10  # inner steps of one evaluation (charged against a `steps` budget)


class QuadraticBowl(Task):
    """A noisy quadratic bowl in `dims` hyperparameters on [0, 1], optimum drawn from the seed:
    the validation loss is the squared distance to it plus noise, the test loss the same without
    noise; regret is the validation loss above the bowl's floor."""

    def __init__(
        self,
        *,
        seed: int = 0,
        device: str = "cpu",  # every task receives these three from the harness
        data_dir: str | None = None,
        dims: int = 2,
        noise: float = 0.01,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.optimum = rng.uniform(0.2, 0.8, size=dims)
        self.noise = noise
        self.dims = dims

    def space(self) -> list[HyperParam]:
        return [HyperParam(f"x{i}", 0.0, 1.0, 0.5) for i in range(self.dims)]

    def steps_per_evaluation(self) -> int:
        return STEPS

    def cost_model(self) -> CostModel:
        return CostModel.fixed(EVALUATION_FLOPS)  # black-box only: no gradient_problem()

    def _distance(self, config: dict[str, float]) -> float:
        point = np.array([config[f"x{i}"] for i in range(self.dims)])
        return float(np.sum((point - self.optimum) ** 2))

    def evaluate(self, config: dict[str, float]) -> Evaluation:
        # Deterministic per configuration: the same config always gives the same loss.
        noise = self.noise * (np.sin(1e3 * sum(config.values())) + 1)
        distance = self._distance(config)
        return Evaluation(val_loss=distance + noise, steps=STEPS, extra={"test_loss": distance})

    def regret(self, val_loss: float) -> float | None:
        return val_loss  # the floor of the bowl (noise aside) is 0
