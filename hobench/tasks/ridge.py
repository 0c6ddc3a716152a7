"""Ridge regression with one L2 weight per feature group, whose optimum is known in closed form.

The design makes λ* exact: training and validation inputs have orthogonal columns with
XᵀX/n = I, so the exactly trained weights are w_j(λ) = b_j / (1 + λ_g(j)) with b = Xᵀy/n, and
the validation loss is, up to a constant, ½ Σ_j (w_j(λ) − w̃_j)² with w̃ the validation
least-squares solution. Per group this is a convex quadratic in u = 1/(1 + λ_g), minimised at
u* = Σ b_j w̃_j / Σ b_j², so λ*_g = 1/u* − 1, clipped to the search bounds. Every strategy is
scored by its regret f(λ) − f(λ*): a strategy that cannot approach λ* here has a bug.

The inner problem is T steps of gradient descent from w = 0 with η = 1/(1 + λ_max), which
contracts by at least 1 − η per step; with the default T the trained weights match the exact
solution to float64 precision, so f is the exact validation loss.

Gradient strategies move log λ with Adam's step = `hyper_lr` × the width of the log range.
Tuned defaults (seed 100, never a suite seed; cost budget 20; lowest final validation loss among
0.01, 0.03, 0.1, 0.3): hyper_lr = 0.1 (Reverse-HG and Forward-HG both), online_hyper_lr = 0.01
(RTHO, whose T/Δ = 40 hyper-steps per run are many more).
"""

from __future__ import annotations

import math

import torch

from hobench.domains import Interval, ParamError
from hobench.hypergrad import gd, unroll
from hobench.registry import TASKS
from hobench.tasks.base import Evaluation, GradientProblem, HyperParam, Task, Training
from hobench.tasks.common import COMPILE_TRAINING, COUNT, DTYPE, POSITIVE, resolve_dtype


def _orthogonal_design(n: int, d: int, gen: torch.Generator, dtype) -> torch.Tensor:
    """n × d inputs with XᵀX/n = I exactly (up to rounding)."""
    q, _ = torch.linalg.qr(torch.randn(n, d, generator=gen, dtype=torch.float64))
    return (math.sqrt(n) * q).to(dtype)


@TASKS.register("ridge")
class Ridge(Task):
    """Ridge regression with one L2 weight per feature group and a closed-form optimum λ*:
    every strategy is scored by its regret f(λ) − f(λ*) (lower is better)."""

    domains = {
        **dict.fromkeys(("groups", "features_per_group", "n_train", "n_val", "n_test"), COUNT),
        "noise": Interval(0),
        "steps": COUNT,
        "l2_low": POSITIVE,
        "l2_high": POSITIVE,
        "hyper_lr": POSITIVE,
        "online_hyper_lr": POSITIVE,
        "dtype": DTYPE,
    }

    @classmethod
    def check_params(cls, params: dict) -> None:
        if params["l2_high"] <= params["l2_low"]:
            raise ParamError(
                "l2_high",
                f"{params['l2_high']} is not above l2_low = {params['l2_low']}",
                "give l2_low < l2_high",
            )
        d = params["groups"] * params["features_per_group"]
        for name in ("n_train", "n_val"):
            if params[name] < d:
                raise ParamError(
                    name,
                    f"{params[name]} < groups * features_per_group = {d}",
                    f"use {name} >= {d} (the design needs full column rank)",
                )

    def __init__(
        self,
        *,
        seed: int = 0,
        device: str = "cpu",
        data_dir: str | None = None,
        groups: int = 4,
        features_per_group: int = 5,
        n_train: int = 100,
        n_val: int = 100,
        n_test: int = 400,
        noise: float = 3.0,
        steps: int = 400,
        l2_low: float = 1e-3,
        l2_high: float = 10.0,
        hyper_lr: float = 0.1,
        online_hyper_lr: float = 0.01,
        dtype: str = "float64",
    ) -> None:
        if groups < 1 or features_per_group < 1:
            raise ValueError("ridge needs groups >= 1 and features_per_group >= 1")
        if min(n_train, n_val) < groups * features_per_group:
            raise ValueError("ridge needs n_train and n_val >= groups * features_per_group")
        self.device, self.dtype = torch.device(device), resolve_dtype(dtype)
        self.groups, self.steps = groups, steps
        self.l2_low, self.l2_high = l2_low, l2_high
        self.hyper_lr, self.online_hyper_lr = hyper_lr, online_hyper_lr
        d = groups * features_per_group
        gen = torch.Generator().manual_seed(seed)
        # Group g's true weights shrink geometrically, so the groups want different λ.
        scale = torch.repeat_interleave(
            0.5 ** torch.arange(groups, dtype=torch.float64), features_per_group
        )
        w_true = scale * torch.randn(d, generator=gen, dtype=torch.float64)

        def sample(n: int, orthogonal: bool):
            X = (
                _orthogonal_design(n, d, gen, torch.float64)
                if orthogonal
                else torch.randn(n, d, generator=gen, dtype=torch.float64)
            )
            y = X @ w_true + noise * torch.randn(n, generator=gen, dtype=torch.float64)
            return X.to(self.device, self.dtype), y.to(self.device, self.dtype)

        self.train_xy, self.val_xy = sample(n_train, True), sample(n_val, True)
        self.test_xy = sample(n_test, False)
        self.group_of = torch.arange(d, device=self.device) // features_per_group
        self.lr = 1.0 / (1.0 + l2_high)
        self.dynamics = gd(self._inner, lr=self.lr)
        self.l2_star = self._closed_form_optimum()
        self.f_star = self._val_loss(self._exact_weights(self.l2_star))

    # --- the problem -------------------------------------------------------------------------
    def _inner(self, w, hp, batch):
        X, y = self.train_xy
        l2 = hp["log_l2"].exp()
        return 0.5 * ((X @ w - y) ** 2).mean() + 0.5 * (l2[self.group_of] * w * w).sum()

    def _outer(self, w, hp):
        X, y = self.val_xy
        return 0.5 * ((X @ w - y) ** 2).mean()

    def _val_loss(self, w) -> float:
        return float(self._outer(w, None))

    def _exact_weights(self, l2: torch.Tensor) -> torch.Tensor:
        X, y = self.train_xy
        return (X.T @ y / len(y)) / (1 + l2[self.group_of])

    def _closed_form_optimum(self) -> torch.Tensor:
        X, y = self.train_xy
        Xv, yv = self.val_xy
        b, w_val = X.T @ y / len(y), Xv.T @ yv / len(yv)
        l2 = torch.empty(self.groups, dtype=self.dtype, device=self.device)
        for g in range(self.groups):
            mask = self.group_of == g
            u = (b[mask] @ w_val[mask]) / (b[mask] @ b[mask])
            # u ≤ 0 means the group is best switched off: λ → ∞, i.e. the upper bound.
            l2[g] = (1 / u - 1) if u > 0 else self.l2_high
        return l2.clamp(self.l2_low, self.l2_high)

    def _train(self, l2: torch.Tensor):
        w0 = torch.zeros(len(self.group_of), dtype=self.dtype, device=self.device)
        hp = {"log_l2": l2.log()}
        state = self.dynamics.init(w0, hp)
        states = unroll(self.dynamics, state, hp, self.steps, lambda t: None, 0, COMPILE_TRAINING)
        return states[-1]["w"]

    def _metrics(self, w) -> Evaluation:
        Xt, yt = self.test_xy
        val = self._val_loss(w)
        return Evaluation(
            val_loss=val,
            steps=self.steps,
            extra={
                "test_loss": float(0.5 * ((Xt @ w - yt) ** 2).mean()),
                "regret": val - self.f_star,
            },
        )

    # --- the task interface ------------------------------------------------------------------
    def space(self) -> list[HyperParam]:
        return [
            HyperParam(
                f"l2_{g}",
                self.l2_low,
                self.l2_high,
                default=1.0,
                log=True,
                doc=f"L2 weight of feature group {g}",
            )
            for g in range(self.groups)
        ]

    def steps_per_evaluation(self) -> int:
        return self.steps

    def _l2_from_config(self, config: dict[str, float]) -> torch.Tensor:
        values = [config[f"l2_{g}"] for g in range(self.groups)]
        return torch.tensor(values, dtype=self.dtype, device=self.device)

    def training(self) -> Training:
        return Training(
            dynamics=self.dynamics,
            params0=lambda: torch.zeros(len(self.group_of), dtype=self.dtype, device=self.device),
            hp=lambda config: {"log_l2": self._l2_from_config(config).log()},
            steps=self.steps,
            batch_at=lambda t: None,
            score=self._metrics,
            loss=self._inner,
        )

    def gradient_problem(self, start: str = "default") -> GradientProblem:
        """Gradient strategies move log λ, as the black-box ones search λ on a log scale."""

        def project(hp):
            return {"log_l2": hp["log_l2"].clamp(math.log(self.l2_low), math.log(self.l2_high))}

        w0 = torch.zeros(len(self.group_of), dtype=self.dtype, device=self.device)
        return GradientProblem(
            dynamics=self.dynamics,
            params0=lambda: w0.clone(),
            hp0={"log_l2": self._start_l2(start).log()},
            steps=self.steps,
            batch_at=lambda t: None,
            outer=self._outer,
            project=project,
            evaluate=lambda w, hp: self._metrics(w),
            hyper_lr=self.hyper_lr,
            ranges={"log_l2": math.log(self.l2_high / self.l2_low)},
            online_hyper_lr=self.online_hyper_lr,
            inner_lr=self.lr,
        )

    def _start_l2(self, start: str) -> torch.Tensor:
        """The defaults (λ = 1), or for the null teacher no regularisation: λ at its floor."""
        if start not in ("default", "rtho", "null"):
            raise ValueError(f"start must be default, rtho or null, got {start!r}")
        l2 = self._l2_from_config(self.default_config())
        return torch.full_like(l2, self.l2_low) if start == "null" else l2

    def finalize(self, hp: dict[str, torch.Tensor]) -> dict:
        ev = self._metrics(self._train(hp["log_l2"].exp()))
        return {"val_loss": ev.val_loss, "test_acc": None, **ev.extra}

    def regret(self, val_loss: float) -> float | None:
        return val_loss - self.f_star
