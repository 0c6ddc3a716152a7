"""An external Optuna sampler as a hobench strategy: subclass OptunaStrategy, build the sampler."""

from __future__ import annotations

import optuna

from hobench.domains import Interval
from hobench.strategies.blackbox import OptunaStrategy


class NSGAII(OptunaStrategy):
    """Optuna's NSGA-II sampler (a genetic algorithm) on the validation loss."""

    domains = {"population_size": Interval(2, integer=True)}  # checked before any cell runs

    def __init__(self, population_size: int = 8) -> None:  # suite parameters: keywords
        self.population_size = population_size

    def make_sampler(self, space, budget, task, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=seed)
