"""A quadratic bilevel problem with a strongly convex inner problem and a closed-form λ*.

Inner (training) loss on a minibatch B of the n training rows (x_i, y_i):

    G(z, λ; B) = ½ mean_{i∈B} (x_iᵀ z − y_i)² + ½ μ ‖z‖² − zᵀ K λ,

so with H = XᵀX/n + μ I and b = Xᵀy/n the solution is z*(λ) = H⁻¹ (b + K λ), linear in λ.
Outer (validation) loss on a minibatch B' of the validation rows:

    F(z; B') = ½ mean_{i∈B'} (x'_iᵀ z − y'_i)².

f(λ) = F(z*(λ)) is a quadratic, strongly convex since P = H⁻¹K has full column rank (m ≤ d);
with H_v = X'ᵀX'/n_v and b_v = X'ᵀy'/n_v its minimiser solves
(Pᵀ H_v P) λ* = Pᵀ (b_v − H_v H⁻¹ b). The hyperparameters live in a box of ± `bound`, wide
enough to hold λ* (the task refuses a seed whose λ* falls outside).

Every strategy is scored by its regret f(λ) − f(λ*). Gradient descent from z = 0 with η = 1/L
(L the largest eigenvalue of H) for the default T = 60 steps reaches z*(λ) to float64 rounding,
so a black-box evaluation is f itself. Minibatches (`batch_size`, `val_batch_size`; 0 takes
the whole set, so the oracles are exact) come from a seeded shuffle per epoch and are drawn
only by the stochastic solvers; every other strategy trains full-batch.

Tuned defaults (seed 100, never a suite seed; cost budget 20; lowest final regret):
hyper_lr = 0.03 (Adam's step as a fraction of λ's range, Reverse-HG: 0.01, 0.03, 0.1, 0.3
tried; regrets 0.33, 0.20, 0.82, 0.82), online_hyper_lr = 0.01 (the stochastic solvers' step
per 10 inner steps, hobench.strategies.bilevel: best for SOBA and F2SA of 0.003, 0.01, 0.03;
AmIGO's best was 0.03, 0.0098 against 0.0125).
"""

from __future__ import annotations

import torch

from hobench.domains import Interval, ParamError
from hobench.hypergrad import gd, unroll
from hobench.registry import TASKS
from hobench.tasks.base import Evaluation, GradientProblem, HyperParam, Task, Training
from hobench.tasks.common import COMPILE_TRAINING, COUNT, DTYPE, POSITIVE, resolve_dtype


def _seeded_batches(n: int, size: int, seed: int, device) -> callable:
    """batch(t), t = 1, 2, ...: indices of minibatch t of a seeded shuffle per epoch (all n
    indices when `size` is 0 or ≥ n)."""
    if size <= 0 or size >= n:
        everything = torch.arange(n, device=device)
        return lambda t: everything
    per_epoch, cache = n // size, {}

    def batch(t: int) -> torch.Tensor:
        epoch, k = divmod(t - 1, per_epoch)
        if epoch not in cache:
            cache.clear()
            gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
            cache[epoch] = torch.randperm(n, generator=gen).to(device)
        return cache[epoch][k * size : (k + 1) * size]

    return batch


@TASKS.register("quadratic")
class QuadraticBilevel(Task):
    """A quadratic bilevel problem, strongly convex inside, with λ* in closed form: each
    strategy's regret f(λ) − f(λ*) (lower is better), exact to rounding."""

    domains = {
        **dict.fromkeys(("dim", "hyperparams", "n_train", "n_val", "steps"), COUNT),
        "batch_size": Interval(0, integer=True, meaning="0 takes every row"),
        "val_batch_size": Interval(0, integer=True, meaning="0 takes every row"),
        "mu": POSITIVE,
        "bound": POSITIVE,
        "hyper_lr": POSITIVE,
        "online_hyper_lr": POSITIVE,
        "dtype": DTYPE,
    }

    @classmethod
    def check_params(cls, params: dict) -> None:
        for size, rows in (("batch_size", "n_train"), ("val_batch_size", "n_val")):
            if params[size] > params[rows]:
                raise ParamError(
                    size, f"{params[size]} > {rows} = {params[rows]}", f"use 0..{rows}"
                )

    def __init__(
        self,
        *,
        seed: int = 0,
        device: str = "cpu",
        data_dir: str | None = None,
        dim: int = 10,
        hyperparams: int = 3,
        n_train: int = 200,
        n_val: int = 200,
        batch_size: int = 0,
        val_batch_size: int = 0,
        mu: float = 0.1,
        bound: float = 3.0,
        steps: int = 60,
        hyper_lr: float = 0.03,
        online_hyper_lr: float = 0.01,
        dtype: str = "float64",
    ) -> None:
        self.device, self.dtype = torch.device(device), resolve_dtype(dtype)
        self.steps, self.mu, self.bound = steps, mu, bound
        self.hyper_lr, self.online_hyper_lr = hyper_lr, online_hyper_lr
        self.m = hyperparams
        gen = torch.Generator().manual_seed(seed)
        f64 = dict(generator=gen, dtype=torch.float64)
        X = torch.randn(n_train, dim, **f64)
        y = X @ torch.randn(dim, **f64) + torch.randn(n_train, **f64)
        K = torch.randn(dim, hyperparams, **f64)
        H = X.T @ X / n_train + mu * torch.eye(dim, dtype=torch.float64)
        # Validation targets come from the solution at a hidden λ ∈ [−1, 1]^m, plus noise, so
        # λ* is of order one (not equal to it: the noise and the validation rows move it).
        hidden = 2 * torch.rand(hyperparams, **f64) - 1
        z_hidden = torch.linalg.solve(H, X.T @ y / n_train + K @ hidden)
        Xv = torch.randn(n_val, dim, **f64)
        yv = Xv @ z_hidden + 0.5 * torch.randn(n_val, **f64)
        self.train = X.to(self.device, self.dtype), y.to(self.device, self.dtype)
        self.val = Xv.to(self.device, self.dtype), yv.to(self.device, self.dtype)
        self.K, self.H = K.to(self.device, self.dtype), H.to(self.device, self.dtype)
        self.lr = 1.0 / float(torch.linalg.eigvalsh(self.H).max())
        self.dynamics = gd(self._inner, lr=self.lr)
        self.partition = tuple(
            n // size if 0 < size < n else 1
            for n, size in ((n_train, batch_size), (n_val, val_batch_size))
        )
        self._train_batch = _seeded_batches(n_train, batch_size, 2 * seed, self.device)
        self._val_batch = _seeded_batches(n_val, val_batch_size, 2 * seed + 1, self.device)
        self.lambda_star = self._closed_form_optimum()
        self.f_star = self.value(self.lambda_star)

    # --- the problem -------------------------------------------------------------------------
    def _inner(self, z, hp, idx):
        X, y = self.train
        rows = slice(None) if idx is None else idx
        fit = 0.5 * ((X[rows] @ z - y[rows]) ** 2).mean()
        return fit + 0.5 * self.mu * (z * z).sum() - z @ (self.K @ hp["lam"])

    def _outer_on(self, z, hp, idx):
        X, y = self.val
        rows = slice(None) if idx is None else idx
        return 0.5 * ((X[rows] @ z - y[rows]) ** 2).mean()

    def _outer(self, z, hp):
        return self._outer_on(z, hp, None)

    def solution(self, lam: torch.Tensor) -> torch.Tensor:
        """z*(λ) = H⁻¹ (b + K λ), exactly."""
        X, y = self.train
        return torch.linalg.solve(self.H, X.T @ y / len(y) + self.K @ lam)

    def value(self, lam: torch.Tensor) -> float:
        """f(λ) = F(z*(λ)) on the whole validation set."""
        return float(self._outer(self.solution(lam), None))

    def _closed_form_optimum(self) -> torch.Tensor:
        (X, y), (Xv, yv) = self.train, self.val
        P = torch.linalg.solve(self.H, self.K)
        Hv, bv = Xv.T @ Xv / len(yv), Xv.T @ yv / len(yv)
        z0 = torch.linalg.solve(self.H, X.T @ y / len(y))
        lam = torch.linalg.solve(P.T @ Hv @ P, P.T @ (bv - Hv @ z0))
        if float(lam.abs().max()) >= self.bound:
            raise ValueError(f"quadratic: λ* = {lam.tolist()} is outside ± bound = {self.bound}")
        return lam

    def _params0(self):
        return torch.zeros(self.train[0].shape[1], dtype=self.dtype, device=self.device)

    def _train(self, lam: torch.Tensor):
        hp = {"lam": lam}
        state = self.dynamics.init(self._params0(), hp)
        states = unroll(self.dynamics, state, hp, self.steps, lambda t: None, 0, COMPILE_TRAINING)
        return states[-1]["w"]

    def _metrics(self, z) -> Evaluation:
        val = float(self._outer(z, None))
        return Evaluation(val_loss=val, steps=self.steps, extra={"regret": val - self.f_star})

    # --- the task interface ------------------------------------------------------------------
    def space(self) -> list[HyperParam]:
        return [
            HyperParam(f"lam_{j}", -self.bound, self.bound, default=0.0, doc=f"λ_{j}")
            for j in range(self.m)
        ]

    def steps_per_evaluation(self) -> int:
        return self.steps

    def _lam(self, config) -> torch.Tensor:
        values = [config[f"lam_{j}"] for j in range(self.m)]
        return torch.tensor(values, dtype=self.dtype, device=self.device)

    def training(self) -> Training:
        return Training(
            dynamics=self.dynamics,
            params0=self._params0,
            hp=lambda config: {"lam": self._lam(config)},
            steps=self.steps,
            batch_at=lambda t: None,
            score=self._metrics,
            loss=self._inner,
        )

    def gradient_problem(self, start: str = "default") -> GradientProblem:
        if start not in ("default", "rtho", "null"):
            raise ValueError(f"start must be default, rtho or null, got {start!r}")
        return GradientProblem(
            dynamics=self.dynamics,
            params0=self._params0,
            hp0={"lam": torch.zeros(self.m, dtype=self.dtype, device=self.device)},
            steps=self.steps,
            batch_at=lambda t: None,
            outer=self._outer,
            project=lambda hp: {"lam": hp["lam"].clamp(-self.bound, self.bound)},
            evaluate=lambda z, hp: self._metrics(z),
            hyper_lr=self.hyper_lr,
            ranges={"lam": 2 * self.bound},
            online_hyper_lr=self.online_hyper_lr,
            inner_lr=self.lr,
            minibatch_at=self._train_batch,
            partition=self.partition,
            val_batch_at=self._val_batch,
            outer_on=self._outer_on,
        )

    def finalize(self, hp: dict[str, torch.Tensor]) -> dict:
        ev = self._metrics(self._train(hp["lam"].detach()))
        return {"val_loss": ev.val_loss, "test_acc": None, **ev.extra}

    def regret(self, val_loss: float) -> float | None:
        return val_loss - self.f_star
