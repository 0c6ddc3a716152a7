"""Per-feature weight decay on the small tables scikit-learn ships: breast cancer (logistic
regression, 30 features) and diabetes (least squares, 10 features); m = `groups` L2 weights, 1
up to one per feature.

The data (`data`): scikit-learn's copies of the Wisconsin breast-cancer table (569 tumours × 30
measurements: 10 cell-nucleus features, each as mean, standard error and worst value;
malignant or benign) and the diabetes table (442 patients × 10 baseline variables; disease
progression a year later), read from the files inside the installed package (no download). Each
seed draws its own training, validation and test split; features (and the diabetes target) are
standardised with the training split's mean and deviation only. The model: a linear model with
an intercept, trained by T steps of full-batch heavy-ball momentum (μ = 0.9) from zero on the
mean training loss (cross-entropy for breast cancer, squared error for diabetes) plus
½ Σ_j λ_g(j) w_j², the intercept not decayed, with step size 1/(L + λ_max), where L bounds the
loss's curvature (¼ or 2 × the top eigenvalue of XᵀX/n), so training is stable over the whole
box of λ. Group g holds the features j with ⌊j·m/d⌋ = g in the table's column order: m = 1 is
ordinary L2; breast cancer's m = 3 is one decay for the means, the standard errors and the worst
values; m = d is one decay per feature (automatic relevance determination).

Why it is a fair HO task: λ trades fit on 100 training examples against the spread of
the weights, and both tables have strongly correlated columns (breast cancer's radius,
perimeter and area) along which an unregularised fit wanders; only the held-out validation
split can tell which directions to shrink, and how much. Data, model, T and step size are the
same at every m (one plain run is the cost unit throughout), the m = 1 optimum is reachable at
every m, and black-box strategies search the same m-dimensional box of log λ the gradient
strategies move in. With up to 30 hyperparameters fitted on 100 validation examples a lower
validation loss need not carry over, so a test metric is reported beside it: accuracy for
breast cancer, mean squared error of the standardised target (`test_mse`, 1 − R² up to the
test set's own spread) for diabetes. One kind serves both tables because only the loss and the
test metric differ; splits, grouping, training and references are shared code.

Gradient strategies move log λ with Adam's step = `hyper_lr` × the width of the log range.
Tuned defaults (seed 100, never a suite seed; cost budget 20, suites/tabular.toml's; among 0.03,
0.1, 0.3, 1): hyper_lr = 0.3, the lowest final validation loss of Reverse-HG summed over both
tables at m = 1 and m = d (1.487; 0.1 gave 1.494, 0.03 1.568, 1 1.595). online_hyper_lr = 0.1 is
featuredecay's, not tuned here (no suite runs RTHO on this task yet). Set beforehand, not tuned:
100 training and 100 validation examples, the rest for testing; T = 100; the λ box [1e-4, 10]
(from practically no shrinkage to weights held near zero) with the default 0.01. On seed 100 the
best single λ for breast cancer was the box's floor (T steps from zero already restrain the
weights; at T = 1000 too), so there its m = 1 gain is from less shrinkage and any further gain
from shrinking features selectively; for diabetes it was inside the box, near λ = 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hobench.data import load_breast_cancer, load_diabetes, split_indices
from hobench.domains import Choice, Interval, ParamError
from hobench.hypergrad import momentum, unroll
from hobench.registry import TASKS
from hobench.tasks.base import Evaluation, GradientProblem, HyperParam, Task, Training
from hobench.tasks.common import COMPILE_TRAINING, COUNT, DTYPE, POSITIVE, resolve_dtype
from hobench.tasks.knob import crossover_record, log_scale_space

MOMENTUM = 0.9  # heavy ball, as featuredecay: T steps reach ~10x further along flat directions
# Per table: its reader, examples, features and whether the target is a class (else a number).
TABLES = {
    "breast_cancer": (load_breast_cancer, 569, 30, True),
    "diabetes": (load_diabetes, 442, 10, False),
}


@TASKS.register("tabulardecay")
class TabularDecay(Task):
    """A linear model on scikit-learn's breast-cancer (logistic) or diabetes (least squares)
    table with one L2 weight per group of features: m = `groups`, from 1 to one per feature."""

    domains = {
        "data": Choice(tuple(TABLES)),
        **dict.fromkeys(("n_train", "n_val", "groups", "steps"), COUNT),
        "n_test": Interval(0, integer=True, meaning="0 is every example the other splits leave"),
        **dict.fromkeys(("l2_low", "l2_high", "l2_default"), POSITIVE),
        "hyper_lr": POSITIVE,
        "online_hyper_lr": POSITIVE,
        "dtype": DTYPE,
    }

    @classmethod
    def check_params(cls, params: dict) -> None:
        _, examples, features, _ = TABLES[params["data"]]
        left = examples - params["n_train"] - params["n_val"]
        if left < max(1, params["n_test"]):
            raise ParamError(
                "n_train",
                f"n_train + n_val = {params['n_train'] + params['n_val']} leaves {left} of the "
                f"{examples} examples of {params['data']!r}, short of n_test = "
                f"{params['n_test'] or 'at least 1'}",
                "ask for fewer",
            )
        if params["groups"] > features:
            raise ParamError(
                "groups",
                f"{params['groups']} > the {features} features of {params['data']!r}",
                f"use 1 <= groups <= {features} (at most one weight decay per feature)",
            )
        if not params["l2_low"] <= params["l2_default"] <= params["l2_high"] > params["l2_low"]:
            raise ParamError(
                "l2_default",
                f"not l2_low <= l2_default <= l2_high with l2_low < l2_high "
                f"({params['l2_low']}, {params['l2_default']}, {params['l2_high']})",
                "give l2_low < l2_high and the default between them",
            )

    def __init__(
        self,
        *,
        seed: int = 0,
        device: str = "cpu",
        data_dir: str | None = None,
        data: str = "breast_cancer",
        n_train: int = 100,
        n_val: int = 100,
        n_test: int = 0,
        groups: int = 1,
        steps: int = 100,
        l2_low: float = 1e-4,
        l2_high: float = 10.0,
        l2_default: float = 0.01,
        hyper_lr: float = 0.3,
        online_hyper_lr: float = 0.1,
        dtype: str = "float64",  # the problems are tiny: float32 would save nothing
    ) -> None:
        # The same checks a suite's parameters get, for direct use (locals: the parameters).
        params = {k: v for k, v in locals().items() if k != "self"}
        if data not in TABLES:  # the suite validator checks domains first; direct use here
            raise ParamError("data", f"unknown value {data!r}", f"use one of {', '.join(TABLES)}")
        self.check_params(params)
        self.device, self.dtype = torch.device(device), resolve_dtype(dtype)
        self.data, self.groups, self.steps = data, groups, steps
        self.l2_low, self.l2_high, self.l2_default = l2_low, l2_high, l2_default
        self.hyper_lr, self.online_hyper_lr = hyper_lr, online_hyper_lr
        read, examples, features, self.classify = TABLES[data]

        X, y = read()
        n_test = n_test or examples - n_train - n_val
        parts = split_indices(len(y), [n_train, n_val, n_test], seed)
        train = parts[0]
        mean, std = X[train].mean(0), X[train].std(0)
        if not self.classify:  # the target too: the losses are then in units of its variance
            y = (y - y[train].mean()) / y[train].std()
        ones = torch.ones(len(y), 1, dtype=torch.float64)
        # A constant last column carries the intercept, which is not decayed.
        inputs = torch.cat([torch.as_tensor((X - mean) / std), ones], dim=1)
        targets = torch.as_tensor(y, dtype=torch.float64)
        self.train, self.val, self.test = (
            (
                inputs[i].to(self.device, self.dtype),
                targets[i].to(self.device, self.dtype),
            )
            for i in parts
        )
        # Feature j (in the table's column order) belongs to group ⌊j·m/d⌋: m contiguous runs.
        self.group_of = torch.arange(features, device=self.device) * groups // features
        self.no_decay = torch.zeros(1, dtype=self.dtype, device=self.device)  # the intercept
        gram = self.train[0].T.double() @ self.train[0].double() / n_train
        curvature = (0.25 if self.classify else 2.0) * float(torch.linalg.eigvalsh(gram).max())
        self.lr = 1.0 / (curvature + l2_high)
        self.dynamics = momentum(self._inner, lr=self.lr, mu=MOMENTUM)
        self._crossover: dict | None = None
        # What the references depend on: everything but m and the strategies' step sizes.
        self._reference_key = {
            "task": "tabulardecay",
            "seed": seed,
            "data": data,
            "sizes": [n_train, n_val, n_test, steps],
            "l2": [l2_low, l2_high, l2_default],
            "dtype": dtype,
            "device": str(self.device),
        }

    # --- the problem -------------------------------------------------------------------------
    def _loss(self, w, X, y):
        """The mean data loss: cross-entropy on the logits, or squared error."""
        if self.classify:
            return F.binary_cross_entropy_with_logits(X @ w, y)
        return ((X @ w - y) ** 2).mean()

    def _inner(self, w, hp, batch):
        l2 = torch.cat([hp["log_l2"].exp()[self.group_of], self.no_decay])
        return self._loss(w, *self.train) + 0.5 * (l2 * w * w).sum()

    def _outer(self, w, hp):
        return self._loss(w, *self.val)

    def _params0(self):
        return torch.zeros(self.train[0].shape[1], dtype=self.dtype, device=self.device)

    def _train(self, log_l2: torch.Tensor):
        hp = {"log_l2": log_l2}
        state = self.dynamics.init(self._params0(), hp)
        states = unroll(self.dynamics, state, hp, self.steps, lambda t: None, 0, COMPILE_TRAINING)
        return states[-1]["w"]

    def _metrics(self, w) -> Evaluation:
        with torch.no_grad():
            val_loss = float(self._outer(w, None))
            extra = {"crossover": self.crossover()}
            if not self.classify:
                extra["test_mse"] = float(self._loss(w, *self.test))
                return Evaluation(val_loss, steps=self.steps, extra=extra)
            val_acc, test_acc = (
                float(((X @ w > 0).to(y.dtype) == y).double().mean())
                for X, y in (self.val, self.test)
            )
        return Evaluation(val_loss, val_acc, test_acc, steps=self.steps, extra=extra)

    def _log_l2(self, values) -> torch.Tensor:
        return torch.tensor(values, dtype=self.dtype, device=self.device).log()

    def crossover(self) -> dict:
        """m, T, one state's size and the reference losses (see hobench.tasks.knob)."""
        if self._crossover is None:
            self._crossover = self._references()
        return self._crossover

    def _references(self) -> dict:
        def single(l2: float) -> float:
            return float(self._outer(self._train(self._log_l2([l2] * self.groups)), None))

        bounds = (self.l2_low, self.l2_high)
        return crossover_record(
            self._reference_key, single, self.l2_default, bounds, self.groups, self.steps,
            self._params0(),
            series=self.data,  # one crossover axis per table (see hobench.tasks.knob)
        )  # fmt: skip

    # --- the task interface ------------------------------------------------------------------
    def prepare(self) -> None:
        self.crossover()  # the references, off the budget and the clock

    def space(self) -> list[HyperParam]:
        bounds = (self.l2_low, self.l2_high)
        return log_scale_space(
            "l2", self.groups, bounds, self.l2_default, "L2 weight of feature group {}"
        )

    def steps_per_evaluation(self) -> int:
        return self.steps

    def training(self) -> Training:
        return Training(
            dynamics=self.dynamics,
            params0=self._params0,
            hp=lambda config: {
                "log_l2": self._log_l2([config[f"l2_{g}"] for g in range(self.groups)])
            },
            steps=self.steps,
            batch_at=lambda t: None,
            score=self._metrics,
            loss=self._inner,
        )

    def gradient_problem(self, start: str = "default") -> GradientProblem:
        """Gradient strategies move log λ, as the black-box ones search λ on a log scale."""
        if start not in ("default", "rtho", "null"):
            raise ValueError(f"start must be default, rtho or null, got {start!r}")
        low, high = math.log(self.l2_low), math.log(self.l2_high)
        # The null teacher starts without regularisation: λ at its floor.
        first = self.l2_low if start == "null" else self.l2_default
        return GradientProblem(
            dynamics=self.dynamics,
            params0=self._params0,
            hp0={"log_l2": self._log_l2([first] * self.groups)},
            steps=self.steps,
            batch_at=lambda t: None,
            outer=self._outer,
            project=lambda hp: {"log_l2": hp["log_l2"].clamp(low, high)},
            evaluate=lambda params, hp: self._metrics(params),
            hyper_lr=self.hyper_lr,
            ranges={"log_l2": high - low},
            online_hyper_lr=self.online_hyper_lr,
        )

    def finalize(self, hp: dict[str, torch.Tensor]) -> dict:
        ev = self._metrics(self._train(hp["log_l2"]))
        return {"val_loss": ev.val_loss, "val_acc": ev.val_acc, "test_acc": ev.test_acc, **ev.extra}
