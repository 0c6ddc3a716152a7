"""A learning-rate schedule as the hyperparameters: η_1 … η_T in m pieces, on scikit-learn's
digits.

The data: the 1797 8×8 digits that ship inside scikit-learn (no download), pixels scaled to
[0, 1], split by seed into training, validation and test digits. The model: a one-hidden-layer
tanh network (64 → `width` → 10) trained by T steps of minibatch SGD from a seeded
initialisation, the minibatches a seeded shuffle per epoch. Step t uses the step size of its
piece: T steps are split into m = `pieces` equal runs of steps, each with its own η (m = 1: a
constant step size; `pieces` = 0: one η per step, m = T). The outer loss is the validation
cross-entropy after step T.

Why it is a fair HO task: the schedule is what practitioners tune by hand (warm-up, decay), and
its effect is real here — a constant step too small under-trains in T steps, too large
overshoots; data, network, minibatches and T are the same for every m and every strategy, the
constant schedule (m = 1) is reachable at every m, and black-box strategies search the same box
of log η per piece that gradient strategies move in. Varying T with m fixed is the paper's other
axis: Reverse-HG stores T + 1 weight vectors, Forward-HG and RTHO carry m tangents and no
trajectory. The network is tanh rather than ReLU so that the validation loss is smooth in η
(finite differences check the hypergradients).

Gradient strategies move log η with Adam's step = `hyper_lr` × the width of the log range.
Tuned defaults (seed 100, never a suite seed; cost budget 20, pieces 4, T = 100; among 0.01,
0.03, 0.1, 0.3, 1): hyper_lr = 0.3, the lowest final validation loss of Reverse-HG and
Forward-HG summed (Reverse-HG alone preferred 0.1: 0.174 against 0.189); online_hyper_lr = 0.1,
RTHO's best (at 0.3 and 1 its online steps diverge).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hobench.data import load_digits, split_indices
from hobench.domains import Interval, ParamError
from hobench.hypergrad import reparametrized, scheduled_gd, unroll
from hobench.registry import TASKS
from hobench.tasks.base import Evaluation, GradientProblem, HyperParam, Task
from hobench.tasks.common import (
    COMPILE_TRAINING,
    COUNT,
    DTYPE,
    POSITIVE,
    classification_metrics,
    generator,
    resolve_dtype,
)
from hobench.tasks.knob import crossover_record, log_scale_space

CLASSES = 10
DIGITS = 1797  # scikit-learn's digits


@TASKS.register("lrschedule")
class LRSchedule(Task):
    """A tanh network on scikit-learn's digits trained by T SGD steps whose step sizes are the
    hyperparameters: m = `pieces` (0: one per step, m = T)."""

    domains = {
        **dict.fromkeys(("n_train", "n_val", "n_test", "width", "batch_size", "steps"), COUNT),
        "pieces": Interval(0, integer=True, meaning="0 is one step size per step, m = T"),
        **dict.fromkeys(("lr_low", "lr_high", "lr_default"), POSITIVE),
        "hyper_lr": POSITIVE,
        "online_hyper_lr": POSITIVE,
        "dtype": DTYPE,
    }

    @classmethod
    def check_params(cls, params: dict) -> None:
        total = params["n_train"] + params["n_val"] + params["n_test"]
        if total > DIGITS:
            raise ParamError(
                "n_train", f"n_train + n_val + n_test = {total} > {DIGITS} digits", "ask for fewer"
            )
        if params["pieces"] > params["steps"]:
            raise ParamError(
                "pieces",
                f"{params['pieces']} > steps = {params['steps']}",
                "use 0 <= pieces <= steps (0: one step size per step)",
            )
        if not params["lr_low"] <= params["lr_default"] <= params["lr_high"] > params["lr_low"]:
            raise ParamError(
                "lr_default",
                f"not lr_low <= lr_default <= lr_high with lr_low < lr_high "
                f"({params['lr_low']}, {params['lr_default']}, {params['lr_high']})",
                "give lr_low < lr_high and the default between them",
            )

    def __init__(
        self,
        *,
        seed: int = 0,
        device: str = "cpu",
        data_dir: str | None = None,
        n_train: int = 800,
        n_val: int = 400,
        n_test: int = 597,
        width: int = 256,
        batch_size: int = 50,
        steps: int = 100,
        pieces: int = 4,
        lr_low: float = 0.01,
        lr_high: float = 3.0,
        lr_default: float = 0.1,
        hyper_lr: float = 0.3,
        online_hyper_lr: float = 0.1,
        dtype: str = "float32",
    ) -> None:
        # The same checks a suite's parameters get, for direct use (locals: the parameters).
        self.check_params({k: v for k, v in locals().items() if k != "self"})
        self.device, self.dtype = torch.device(device), resolve_dtype(dtype)
        self.seed, self.width, self.batch_size, self.steps = seed, width, batch_size, steps
        self.pieces = pieces or steps
        self.lr_low, self.lr_high, self.lr_default = lr_low, lr_high, lr_default
        self.hyper_lr, self.online_hyper_lr = hyper_lr, online_hyper_lr
        X, y = load_digits()
        parts = split_indices(len(y), [n_train, n_val, n_test], seed)
        self.train, self.val, self.test = (
            (
                torch.as_tensor(X[i], dtype=self.dtype, device=self.device),
                torch.as_tensor(y[i], device=self.device),
            )
            for i in parts
        )
        plain = scheduled_gd(self._inner, steps, self.pieces)
        self.dynamics = reparametrized(plain, lambda hp: {"lr": hp["log_lr"].exp()})
        self._epochs: dict[int, torch.Tensor] = {}
        self._crossover: dict | None = None
        # What the references depend on: everything but m and the strategies' step sizes.
        self._reference_key = {
            "task": "lrschedule",
            "seed": seed,
            "sizes": [n_train, n_val, n_test, width, batch_size, steps],
            "lr": [lr_low, lr_high, lr_default],
            "dtype": dtype,
            "device": str(self.device),
        }

    # --- the model ----------------------------------------------------------------------------
    def _params0(self):
        """Seeded LeCun-normal weights: every strategy starts from the same network."""
        gen = generator(self.seed + 1, self.device)
        like = dict(generator=gen, device=self.device, dtype=self.dtype)
        inputs = self.train[0].shape[1]
        W1 = torch.randn(self.width, inputs, **like) / math.sqrt(inputs)
        W2 = torch.randn(CLASSES, self.width, **like) / math.sqrt(self.width)
        zeros = dict(device=self.device, dtype=self.dtype)
        return W1, torch.zeros(self.width, **zeros), W2, torch.zeros(CLASSES, **zeros)

    @staticmethod
    def _logits(params, X):
        W1, b1, W2, b2 = params
        return F.linear(torch.tanh(F.linear(X, W1, b1)), W2, b2)

    def _inner(self, params, hp, idx):
        return F.cross_entropy(self._logits(params, self.train[0][idx]), self.train[1][idx])

    def _outer(self, params, hp):
        return F.cross_entropy(self._logits(params, self.val[0]), self.val[1])

    def _batch(self, t: int):
        """(t, minibatch t of a seeded epoch-wise shuffle): replayable from t alone."""
        n = len(self.train[1])
        per_epoch = max(1, n // self.batch_size)
        epoch, k = divmod(t - 1, per_epoch)
        if epoch not in self._epochs:
            gen = generator(self.seed * 100_003 + epoch, self.device)
            self._epochs = {epoch: torch.randperm(n, generator=gen, device=self.device)}
        return t, self._epochs[epoch][k * self.batch_size : (k + 1) * self.batch_size]

    def _train(self, log_lr: torch.Tensor):
        hp = {"log_lr": log_lr}
        state = self.dynamics.init(self._params0(), hp)
        states = unroll(self.dynamics, state, hp, self.steps, self._batch, 0, COMPILE_TRAINING)
        return states[-1]["w"]

    def _metrics(self, params) -> Evaluation:
        with torch.no_grad():
            val_loss, val_acc = classification_metrics(
                self._logits(params, self.val[0]), self.val[1]
            )
            test_acc = classification_metrics(self._logits(params, self.test[0]), self.test[1])[1]
        return Evaluation(
            val_loss, val_acc, test_acc, steps=self.steps, extra={"crossover": self.crossover()}
        )

    def _log_lr(self, values) -> torch.Tensor:
        return torch.tensor(values, dtype=self.dtype, device=self.device).log()

    def crossover(self) -> dict:
        """m, T, one state's size and the reference losses (see hobench.tasks.knob)."""
        if self._crossover is None:
            self._crossover = self._references()
        return self._crossover

    def _references(self) -> dict:
        def constant(lr: float) -> float:
            with torch.no_grad():
                params = self._train(self._log_lr([lr] * self.pieces))
                return float(self._outer(params, None))

        bounds = (self.lr_low, self.lr_high)
        return crossover_record(
            self._reference_key, constant, self.lr_default, bounds, self.pieces, self.steps,
            self._params0(),
        )  # fmt: skip

    # --- the task interface ------------------------------------------------------------------
    def prepare(self) -> None:
        self.crossover()  # the references, off the budget and the clock

    def space(self) -> list[HyperParam]:
        bounds = (self.lr_low, self.lr_high)
        return log_scale_space(
            "lr", self.pieces, bounds, self.lr_default, "step size of piece {} of the schedule"
        )

    def steps_per_evaluation(self) -> int:
        return self.steps

    def evaluate(self, config: dict[str, float]) -> Evaluation:
        return self._metrics(
            self._train(self._log_lr([config[f"lr_{p}"] for p in range(self.pieces)]))
        )

    def gradient_problem(self, start: str = "default") -> GradientProblem:
        """Gradient strategies move log η, as the black-box ones search η on a log scale."""
        if start not in ("default", "rtho", "null"):
            raise ValueError(f"start must be default, rtho or null, got {start!r}")
        low, high = math.log(self.lr_low), math.log(self.lr_high)
        # The null teacher starts from the smallest step size (log η cannot start at η = 0).
        first = self.lr_low if start == "null" else self.lr_default
        return GradientProblem(
            dynamics=self.dynamics,
            params0=self._params0,
            hp0={"log_lr": self._log_lr([first] * self.pieces)},
            steps=self.steps,
            batch_at=self._batch,
            outer=self._outer,
            project=lambda hp: {"log_lr": hp["log_lr"].clamp(low, high)},
            evaluate=lambda params, hp: self._metrics(params),
            hyper_lr=self.hyper_lr,
            ranges={"log_lr": high - low},
            online_hyper_lr=self.online_hyper_lr,
        )

    def finalize(self, hp: dict[str, torch.Tensor]) -> dict:
        ev = self._metrics(self._train(hp["log_lr"]))
        return {"val_loss": ev.val_loss, "val_acc": ev.val_acc, "test_acc": ev.test_acc, **ev.extra}
