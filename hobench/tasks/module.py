"""Any `nn.Module` as a task: your network, your data, the hyperparameters you name.

A module task trains a model (a built-in CNN or "package.module:callable" returning an
`nn.Module`) on a data set (the embedded MNIST digits, scikit-learn's 8×8 digits, or a user's
factory) by minibatch SGD, momentum or Adam, and tunes any subset of (`tune`):

- `lr`: the learning rate η, on the log scale;
- `momentum`: the heavy-ball μ (optimizer = "momentum");
- `weight_decay`: an L2 weight per parameter group (`decay_groups`: "all", one group;
  "per-layer", one per convolution or linear layer, its weight and bias — BatchNorm's affine
  parameters get no decay; or comma-separated patterns over parameter names, fnmatch-style,
  each pattern a group), on the log scale; J gains ½ Σ_g λ_g ‖P_g‖²;
- `aux_weight`: ρ, where the model returns (logits, auxiliary loss): J = CE + ρ · aux;
- `example_weights`: one weight λ_i ∈ [0, 1] per training example (data reweighting, the
  paper's hyper-cleaning with any model), in {Σλ ≤ R} by the exact projection; J =
  mean over the batch of λ_i · CE_i, scaled by N/R so that λ = R/N trains like plain CE. Tuned
  alone: its final protocol keeps the examples with λ_i ≥ 1e-3 and retrains on them plus the
  validation set at the other hyperparameters' values, reporting test accuracy and the F1 of
  the discarded set against the `n_corrupt` labels corrupted (beside Oracle and Baseline rows).
  Black-box strategies search hyper-cleaning's one-parameter family: keep the ⌊keep·R⌋
  training examples a model trained on the validation set finds easiest.

The state is the module's parameters and floating-point buffers (hobench.hypergrad.module):
BatchNorm's running statistics move with every step (train mode) and score validation and test
(eval mode). Minibatch t is a seeded epoch-wise shuffle of the training set, a function of
(seed, t), so reruns are bit-identical and reverse mode replays the same batches. The initial
weights are the module's own, built under a seeded generator: every strategy starts from the
same network. Gradient strategies move log η, μ, log λ_g, ρ and λ_i directly.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
from functools import cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hobench.data import corrupt_labels, split_indices, to_tensors
from hobench.domains import Choice, Interval, ParamError
from hobench.harness.shared import computed_once
from hobench.hypergrad import reparametrized
from hobench.hypergrad.dynamics import adam_rule, descend_module, momentum_rule, sgd_rule
from hobench.hypergrad.module import FunctionalModel, ModuleError
from hobench.registry import TASKS
from hobench.tasks.base import Evaluation, GradientProblem, HyperParam, Task, Training
from hobench.tasks.common import (
    COUNT,
    DTYPE,
    POSITIVE,
    SOURCE,
    EpochBatches,
    SplitBatches,
    resolve_dtype,
)
from hobench.tasks.hypercleaning import DISCARD_BELOW, f1_score
from hobench.tasks.models import DATA, MODELS, FactoryError, build_model, load_data
from hobench.tasks.projection import project_capped_simplex

TUNABLE = ("lr", "momentum", "weight_decay", "aux_weight", "example_weights")
OPTIMIZERS = ("sgd", "momentum", "adam")
MOMENTUM_RANGE = (0.0, 0.99)


@cache
def _data(spec: str, source: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    return load_data(spec, source, data_dir)


def _shape(X: np.ndarray, y: np.ndarray) -> dict[str, int]:
    """What a built-in model needs to know of the data."""
    return {"in_channels": X.shape[1], "image_size": X.shape[-1], "num_classes": int(y.max()) + 1}


def _seeded_model(params: dict[str, Any], X: np.ndarray, y: np.ndarray, seed: int):
    """The user's or built-in module, its initial weights drawn from the seed alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 7919 + 1)
        return build_model(params["model"], dict(params["model_args"] or {}), _shape(X, y))


def weight_decay_groups(module: torch.nn.Module, spec: str) -> dict[str, list[str]]:
    """Group name → the parameter names its weight decay covers (see the module docstring)."""
    names = [name for name, _ in module.named_parameters()]
    if spec == "all":
        return {"all": names}
    if spec == "per-layer":
        groups = {}
        for layer, sub in module.named_modules():
            own = [n for n, p in sub.named_parameters(recurse=False)]
            if any(p.dim() >= 2 for p in sub.parameters(recurse=False)):
                groups[layer or "model"] = [f"{layer}.{n}" if layer else n for n in own]
        return groups
    groups = {}
    for pattern in (part.strip() for part in spec.split(",")):
        matched = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise ParamError(
                "decay_groups",
                f"pattern {pattern!r} matches no parameter",
                f"the model's parameters are {', '.join(names[:12])}"
                + (", ..." if len(names) > 12 else ""),
            )
        groups[pattern] = matched
    return groups


@TASKS.register("module")
class ModuleTask(Task):
    """Any nn.Module on any data: a built-in CNN (lenet5, resnet) or your own, named
    "package.module:callable", trained by minibatch SGD/momentum/Adam; tunes any of lr,
    momentum, weight decay per parameter group, an auxiliary-loss weight and per-example weights
    (see docs/models.md)."""

    domains = {
        "source": SOURCE,
        **dict.fromkeys(("n_train", "n_val", "n_test", "batch_size", "steps"), COUNT),
        "val_batch_size": COUNT,
        "optimizer": Choice(OPTIMIZERS),
        **dict.fromkeys(("lr", "lr_low", "lr_high", "wd_low", "wd_high"), POSITIVE),
        "momentum": Interval(*MOMENTUM_RANGE),
        "weight_decay": Interval(0),
        "aux_weight": Interval(0),
        "aux_high": POSITIVE,
        "n_corrupt": Interval(0, integer=True),
        "radius": Interval(0, meaning="0: n_train − n_corrupt"),
        "hyper_lr": POSITIVE,
        "online_hyper_lr": POSITIVE,
        "dtype": DTYPE,
    }

    @classmethod
    def check_params(cls, params: dict) -> None:
        """Everything that can be known before a cell runs: the factories import and return
        what they should, the split fits, the hyperparameters exist for this model."""
        tune = params["tune"]
        if not tune or any(name not in TUNABLE for name in tune):
            raise ParamError("tune", f"{list(tune)!r}", f"name some of {', '.join(TUNABLE)}")
        if "example_weights" in tune and len(tune) > 1:
            raise ParamError(
                "tune",
                "example_weights is tuned alone",
                "tune the other hyperparameters in another task entry",
            )
        if "momentum" in tune and params["optimizer"] != "momentum":
            raise ParamError(
                "tune",
                f"momentum is not a hyperparameter of optimizer {params['optimizer']!r}",
                'use optimizer = "momentum" or drop momentum from tune',
            )
        for low, high in (("lr_low", "lr_high"), ("wd_low", "wd_high")):
            if params[low] >= params[high]:
                raise ParamError(low, f"{params[low]} >= {high} = {params[high]}", "widen it")
        lr_range = (params["lr_low"], params["lr_high"])
        if not lr_range[0] <= params["lr"] <= lr_range[1]:
            raise ParamError("lr", f"{params['lr']} outside {lr_range}", "move it inside")
        if "weight_decay" in tune and not (
            params["wd_low"] <= params["weight_decay"] <= params["wd_high"]
        ):
            raise ParamError(
                "weight_decay",
                f"{params['weight_decay']} outside [{params['wd_low']}, {params['wd_high']}]",
                "move it inside",
            )
        try:
            X, y = _data(params["data"], params["source"], params.get("data_dir"))
            sizes = params["n_train"] + params["n_val"] + params["n_test"]
            if sizes > len(y):
                raise ParamError(
                    "n_train",
                    f"n_train + n_val + n_test = {sizes} but data {params['data']!r} has "
                    f"{len(y)} examples",
                    "ask for fewer",
                )
            if params["batch_size"] > params["n_train"]:
                raise ParamError(
                    "batch_size",
                    f"{params['batch_size']} > n_train = {params['n_train']}",
                    "use a batch no larger than the training set",
                )
            if params["n_corrupt"] > params["n_train"] or params["radius"] > params["n_train"]:
                raise ParamError(
                    "n_corrupt", "n_corrupt and radius must be <= n_train", "ask for fewer"
                )
            if not isinstance(params["model_args"] or {}, dict):
                raise ParamError("model_args", "expected a table", "model_args = { width = 8 }")
            module = _seeded_model(params, X, y, 0)
            FunctionalModel(module, torch.float32, torch.device("cpu"))  # refuses dropout, ...
            decays = "weight_decay" in tune or params["weight_decay"] > 0
            if decays and not weight_decay_groups(module, params["decay_groups"]):
                raise ParamError("decay_groups", "no layer has weights", 'use decay_groups = "all"')
            try:
                with torch.no_grad():
                    out = module.eval()(torch.as_tensor(X[:2]))
            except Exception as exc:
                raise FactoryError(
                    f"model {params['model']!r} failed on inputs of shape {(2, *X.shape[1:])} "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                    "make its forward take the data's (n, channels, ...) batches",
                ) from None
            if "aux_weight" in tune and not isinstance(out, tuple):
                raise ParamError(
                    "tune",
                    f"model {params['model']!r} returns one output, so it has no auxiliary loss",
                    "return (logits, aux_loss) from forward, or drop aux_weight",
                )
        except FactoryError as exc:
            name = "model" if exc.problem.startswith("model") else "data"
            raise ParamError(name, exc.problem, exc.fix) from None
        except ModuleError as exc:
            raise ParamError("model", str(exc), "see docs/models.md") from None

    def __init__(
        self,
        *,
        seed: int = 0,
        device: str = "cpu",
        data_dir: str | None = None,
        model: str = "resnet",
        model_args: dict | None = None,
        data: str = "digits",
        source: str = "embedded",
        n_train: int = 1000,
        n_val: int = 400,
        n_test: int = 397,
        optimizer: str = "momentum",
        batch_size: int = 64,
        steps: int = 100,
        tune: tuple = ("lr", "momentum", "weight_decay"),
        decay_groups: str = "per-layer",
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        lr_low: float = 1e-3,
        lr_high: float = 1.0,
        wd_low: float = 1e-6,
        wd_high: float = 0.1,
        aux_weight: float = 0.0,
        aux_high: float = 4.0,
        n_corrupt: int = 0,
        radius: float = 0.0,
        val_batch_size: int = 200,
        hyper_lr: float = 0.1,
        online_hyper_lr: float = 0.03,
        dtype: str = "float32",
    ) -> None:
        params = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        params["tune"] = tuple(tune)
        self.check_params(params)
        self.params = params
        self.seed, self.tune = seed, tuple(tune)
        self.device, self.dtype = torch.device(device), resolve_dtype(dtype)
        self.steps, self.batch_size, self.val_batch_size = steps, batch_size, val_batch_size
        self.hyper_lr, self.online_hyper_lr = hyper_lr, online_hyper_lr
        self.optimizer = optimizer
        self.lr_range, self.wd_range = (lr_low, lr_high), (wd_low, wd_high)
        self.aux_high = aux_high

        X, y = _data(data, source, data_dir)
        train, val, test = split_indices(len(y), [n_train, n_val, n_test], seed)
        y_train, self.corrupted = corrupt_labels(y[train], n_corrupt, int(y.max()) + 1, seed)
        self.train = to_tensors(X[train], y_train, self.device, self.dtype)
        self.val = to_tensors(X[val], y[val], self.device, self.dtype)
        self.test = to_tensors(X[test], y[test], self.device, self.dtype)
        self.n = n_train
        self.radius = radius or float(n_train - n_corrupt)

        module = _seeded_model(params, X, y, seed)
        self.net = FunctionalModel(module, self.dtype, self.device)
        self.groups = weight_decay_groups(module, decay_groups) if self._decays() else {}
        self.fixed = {
            "lr": self._tensor(lr),
            "momentum": self._tensor(momentum),
            "wd": self._tensor([weight_decay] * len(self.groups)),
            "aux_weight": self._tensor(aux_weight),
        }
        self.learning_rate = "lr" if "lr" in self.tune else None
        self.final_protocol_is_plain_training = not self.cleaning
        sizes = {"train": len(self.train[1]), "val": len(self.val[1])}
        self._batch = SplitBatches(sizes, self.seed, self.device)
        self._scores: torch.Tensor | None = None
        self.dynamics = descend_module(self._inner, self._rule())

    @property
    def cleaning(self) -> bool:
        return "example_weights" in self.tune

    def _decays(self) -> bool:
        return "weight_decay" in self.tune or self.params["weight_decay"] > 0

    def _rule(self):
        if self.optimizer == "sgd":
            return sgd_rule("lr")
        if self.optimizer == "adam":
            return adam_rule("lr")
        return momentum_rule("lr", "momentum")

    def _tensor(self, value) -> torch.Tensor:
        return torch.tensor(value, dtype=self.dtype, device=self.device)

    # --- the model and its losses ---------------------------------------------------------------
    def _params0(self):
        return self.net.initial()

    @staticmethod
    def _logits(out):
        return out[0] if isinstance(out, tuple) else out

    def _inner(self, model, hp, idx):
        """J on training minibatch `idx`, and the buffers the step moved."""
        out, buffers = self.net.train_forward(model, self.train[0][idx])
        ce = F.cross_entropy(self._logits(out), self.train[1][idx], reduction="none")
        if "weights" in hp:
            loss = (hp["weights"][idx] * ce * (self.n / self.radius)).mean()
        else:
            loss = ce.mean()
        if isinstance(out, tuple):
            loss = loss + hp["aux_weight"] * out[1]
        for g, names in enumerate(self.groups.values()):
            # λ_g inside the sum: `λ_g * sum` beside a mean hits torch 2.13's float64 tangent
            # of a mean's gradient in forward mode (as in hobench.tasks.auxtarget).
            half = 0.5 * hp["wd"][g]
            loss = loss + sum((half * model["params"][name] ** 2).sum() for name in names)
        return loss, buffers

    def _outer_on(self, model, hp, idx):
        """Validation cross-entropy (eval mode) on the validation examples `idx`."""
        out = self.net.eval_forward(model, self.val[0][idx])
        return F.cross_entropy(self._logits(out), self.val[1][idx])

    def _accuracy(self, model, data) -> tuple[float, float]:
        with torch.no_grad():
            logits = self._logits(self.net.eval_forward(model, data[0]))
        loss = float(F.cross_entropy(logits, data[1]))
        return loss, float((logits.argmax(1) == data[1]).double().mean())

    def _metrics(self, model) -> Evaluation:
        val_loss, val_acc = self._accuracy(model, self.val)
        return Evaluation(val_loss, val_acc, self._accuracy(model, self.test)[1], steps=self.steps)

    # --- hyperparameters: the black-box space and the gradient coordinates -----------------------
    def space(self) -> list[HyperParam]:
        space = []
        if "lr" in self.tune:
            space.append(HyperParam("lr", *self.lr_range, self.params["lr"], log=True, doc="η"))
        if "momentum" in self.tune:
            space.append(HyperParam("momentum", *MOMENTUM_RANGE, self.params["momentum"], doc="μ"))
        if "weight_decay" in self.tune:
            for group in self.groups:
                space.append(
                    HyperParam(
                        f"wd:{group}",
                        *self.wd_range,
                        self.params["weight_decay"],
                        log=True,
                        doc=f"L2 weight of {group}",
                    )
                )
        if "aux_weight" in self.tune:
            space.append(
                HyperParam("aux_weight", 0.0, self.aux_high, self.params["aux_weight"], doc="ρ")
            )
        if self.cleaning:
            space.append(HyperParam("keep", 0.1, 1.0, 1.0, doc="examples kept, as a fraction of R"))
        return space

    def _natural(self, config: dict[str, float]) -> dict[str, torch.Tensor]:
        """A black-box configuration → the tensors the dynamics and the loss read (the fixed
        values where it names none)."""
        hp = dict(self.fixed)
        for name in ("lr", "momentum", "aux_weight"):
            if name in config:
                hp[name] = self._tensor(config[name])
        if any(f"wd:{g}" in config for g in self.groups):
            hp["wd"] = self._tensor(
                [config.get(f"wd:{g}", self.params["weight_decay"]) for g in self.groups]
            )
        if self.cleaning:
            hp["weights"] = self._rule_weights(config.get("keep", 1.0))
        return hp

    def natural_hp(self, hp: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Gradient coordinates (log η, μ, log λ_g, ρ, λ_i; those tuned) → what the loss reads."""
        out = dict(self.fixed)
        if "log_lr" in hp:
            out["lr"] = hp["log_lr"].exp()
        if "log_wd" in hp:
            out["wd"] = hp["log_wd"].exp()
        out.update({k: hp[k] for k in ("momentum", "aux_weight", "weights") if k in hp})
        return out

    def _start(self, start: str) -> dict[str, torch.Tensor]:
        if start not in ("default", "rtho", "null"):
            raise ValueError(f"start must be default, rtho or null, got {start!r}")
        null = start == "null"  # the null teacher: every tuned value at its floor
        hp = {}
        if "lr" in self.tune:
            hp["log_lr"] = self._tensor(math.log(self.lr_range[0] if null else self.params["lr"]))
        if "momentum" in self.tune:
            hp["momentum"] = self._tensor(0.0 if null else self.params["momentum"])
        if "weight_decay" in self.tune:
            wd = self.wd_range[0] if null else self.params["weight_decay"]
            hp["log_wd"] = self._tensor([math.log(wd)] * len(self.groups))
        if "aux_weight" in self.tune:
            hp["aux_weight"] = self._tensor(0.0 if null else self.params["aux_weight"])
        if self.cleaning:
            hp["weights"] = torch.full(
                (self.n,), min(1.0, self.radius / self.n), dtype=self.dtype, device=self.device
            )
        return hp

    def _project(self, hp: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        bounds = {
            "log_lr": tuple(math.log(v) for v in self.lr_range),
            "momentum": MOMENTUM_RANGE,
            "log_wd": tuple(math.log(v) for v in self.wd_range),
            "aux_weight": (0.0, self.aux_high),
        }
        out = {k: v.clamp(*bounds[k]) for k, v in hp.items() if k in bounds}
        if "weights" in hp:
            out["weights"] = project_capped_simplex(hp["weights"], self.radius)
        return out

    def _ranges(self) -> dict[str, float]:
        return {
            "log_lr": math.log(self.lr_range[1] / self.lr_range[0]),
            "momentum": MOMENTUM_RANGE[1] - MOMENTUM_RANGE[0],
            "log_wd": math.log(self.wd_range[1] / self.wd_range[0]),
            "aux_weight": self.aux_high,
            "weights": 1.0,
        }

    # --- the task interface ---------------------------------------------------------------------
    def steps_per_evaluation(self) -> int:
        return self.steps

    def training(self) -> Training:
        return Training(
            dynamics=self.dynamics,
            params0=self._params0,
            hp=self._natural,
            steps=self.steps,
            batch_at=lambda t: self._batch("train", t, self.batch_size),
            score=self._metrics,
            loss=self.dynamics.loss,
        )

    def gradient_problem(self, start: str = "default") -> GradientProblem:
        val_all = torch.arange(len(self.val[1]), device=self.device)
        return GradientProblem(
            dynamics=reparametrized(self.dynamics, self.natural_hp),
            params0=self._params0,
            hp0=self._start(start),
            steps=self.steps,
            batch_at=lambda t: self._batch("train", t, self.batch_size),
            outer=lambda model, hp: self._outer_on(model, hp, val_all),
            project=self._project,
            evaluate=lambda model, hp: self._metrics(model),
            hyper_lr=self.hyper_lr,
            online_hyper_lr=self.online_hyper_lr,
            ranges={k: v for k, v in self._ranges().items() if k in self._start("default")},
            val_batch_at=lambda k: self._batch("val", k, self.val_batch_size),
            outer_on=self._outer_on,
            inner_lr=self.params["lr"],  # the stochastic bilevel solvers' SGD step on J
        )

    def _config(self, hp: dict[str, torch.Tensor]) -> dict[str, float]:
        """Gradient coordinates → the black-box configuration that trains the same way."""
        natural = self.natural_hp(hp)
        config = {}
        if "lr" in self.tune:
            config["lr"] = float(natural["lr"])
        if "momentum" in self.tune:
            config["momentum"] = float(natural["momentum"])
        if "weight_decay" in self.tune:
            config.update(
                {f"wd:{g}": float(v) for g, v in zip(self.groups, natural["wd"], strict=True)}
            )
        if "aux_weight" in self.tune:
            config["aux_weight"] = float(natural["aux_weight"])
        return config

    def finalize(self, hp: dict[str, torch.Tensor]) -> dict:
        if self.cleaning:
            return self._final_cleaning(hp["weights"].detach())
        config = self._config(hp)
        ev = self.evaluate(config)
        return {
            "val_loss": ev.val_loss,
            "val_acc": ev.val_acc,
            "test_acc": ev.test_acc,
            "config": config,
        }

    def finalize_schedule(self, hp_at) -> dict:
        if self.cleaning:  # an online run's answer is the cleaning it ends with
            return self.finalize(hp_at(self.steps))
        return super().finalize_schedule(hp_at)

    def finalize_config(self, config: dict[str, float]) -> dict:
        if self.cleaning:
            return self._final_cleaning(self._rule_weights(config["keep"]))
        return super().finalize_config(config)

    # --- per-example weights: the final protocol and the black-box family ------------------------
    def _train_on(self, X: torch.Tensor, y: torch.Tensor, seed_offset: int = 0):
        """T steps of the task's optimiser at its fixed hyperparameters on (X, y), minibatches
        of a seeded shuffle of these examples; the trained model."""
        n = len(y)
        batches = EpochBatches(
            n,
            min(self.batch_size, n),
            lambda epoch: self.seed * 100_003 + 7 * epoch + 1 + seed_offset,
            self.device,
        )

        def loss(model, hp, idx):
            out, buffers = self.net.train_forward(model, X[idx])
            return F.cross_entropy(self._logits(out), y[idx]), buffers

        dynamics = descend_module(loss, self._rule())
        state = dynamics.init(self._params0(), self.fixed)
        with torch.no_grad():
            for t in range(1, self.steps + 1):
                state = dynamics.step(state, self.fixed, batches(t))
        return dynamics.params(state)

    def _retrain(self, keep: torch.Tensor) -> float:
        """Test accuracy after training on the kept examples plus the validation set."""
        X = torch.cat([self.train[0][keep], self.val[0]])
        y = torch.cat([self.train[1][keep], self.val[1]])
        return self._accuracy(self._train_on(X, y), self.test)[1]

    def _final_cleaning(self, weights: torch.Tensor) -> dict:
        keep = torch.nonzero(weights >= DISCARD_BELOW).flatten()
        removed = np.setdiff1d(np.arange(self.n), keep.cpu().numpy())
        inner = self._fit_weighted(weights, self.fixed)
        return {
            "val_loss": inner.val_loss,
            "val_acc": inner.val_acc,
            "test_acc": self._retrain(keep),
            "kept": int(len(keep)),
            "f1": f1_score(removed, self.corrupted),
            "rows": self.references(),
        }

    def _fit_weighted(self, weights: torch.Tensor, hp: dict) -> Evaluation:
        """The inner run at λ = `weights`: what gradient strategies train and validate."""
        run = self.training()
        state = run.dynamics.init(run.params0(), {**hp, "weights": weights})
        with torch.no_grad():
            for t in range(1, self.steps + 1):
                state = run.dynamics.step(state, {**hp, "weights": weights}, run.batch_at(t))
        return self._metrics(run.dynamics.params(state))

    def _validation_scores(self) -> torch.Tensor:
        """Loss of each training example under a model trained on the validation set."""
        if self._scores is None:
            model = self._train_on(*self.val, seed_offset=1)
            with torch.no_grad():
                logits = self._logits(self.net.eval_forward(model, self.train[0]))
            self._scores = F.cross_entropy(logits, self.train[1], reduction="none")
        return self._scores

    def _rule_weights(self, keep: float) -> torch.Tensor:
        count = max(1, min(self.n, math.floor(keep * self.radius)))  # Σλ = count ≤ R
        weights = torch.zeros(self.n, dtype=self.dtype, device=self.device)
        weights[torch.argsort(self._validation_scores(), stable=True)[:count]] = 1.0
        return weights

    def blackbox_setup_flops(self) -> int:
        """The scoring model's training (T plain steps), paid once by the black-box family."""
        return self.cost_model().plain_run if self.cleaning else 0

    def prepare(self) -> None:
        if self.cleaning:
            self.references()

    def references(self) -> dict[str, dict[str, float]]:
        """Oracle: the clean examples + validation; Baseline: all + validation."""
        if not self.cleaning:
            return {}
        if not hasattr(self, "_references"):
            key = {"task": "module-references", "seed": self.seed, **self.params}
            key["tune"] = list(key["tune"])
            self._references = computed_once(key, self._train_references)
        return self._references

    def _train_references(self) -> dict[str, dict[str, float]]:
        clean = torch.ones(self.n, dtype=torch.bool, device=self.device)
        clean[torch.as_tensor(self.corrupted, device=self.device, dtype=torch.long)] = False
        return {
            "Oracle": {"test_acc": self._retrain(torch.nonzero(clean).flatten()), "f1": 1.0},
            "Baseline": {"test_acc": self._retrain(torch.arange(self.n, device=self.device))},
        }


def _cnn_task(name: str, doc: str, **defaults):
    """A registered module task with other defaults (its suite parameters are the same)."""

    def __init__(self, **params):
        ModuleTask.__init__(self, **{**defaults, **params})

    cls = type(name, (ModuleTask,), {"__init__": __init__, "__doc__": doc})
    base = inspect.signature(ModuleTask.__init__)
    cls.__init__.__signature__ = base.replace(
        parameters=[
            p.replace(default=defaults.get(p.name, p.default)) for p in base.parameters.values()
        ]
    )
    return cls


CNNWeightDecay = TASKS.register("cnn-wd")(
    _cnn_task(
        "CNNWeightDecay",
        "A residual CNN with BatchNorm (3 stages, width 8) on 300 of scikit-learn's 8×8 digits, "
        "trained by momentum SGD for 60 steps; tunes lr, momentum and one weight decay per "
        "convolution or linear layer (m = 12).",
        model="resnet",
        model_args={"width": 8},
        data="digits",
        n_train=300,
        n_val=300,
        n_test=1197,
        steps=60,
        batch_size=32,
        lr=0.02,
        momentum=0.5,
        online_hyper_lr=0.1,
    )
)
CNNCleaning = TASKS.register("cnn-clean")(
    _cnn_task(
        "CNNCleaning",
        "Data hyper-cleaning with LeNet-5 on the embedded MNIST digits: one weight per training "
        "example of a half-corrupted set of 500 (the paper's projection and final protocol), "
        "trained by momentum SGD for 100 steps.",
        model="lenet5",
        data="mnist",
        n_train=500,
        n_val=500,
        n_test=1000,
        n_corrupt=250,
        batch_size=50,
        tune=("example_weights",),
        weight_decay=0.0,
        hyper_lr=0.03,
    )
)

__all__ = ["DATA", "MODELS", "ModuleTask", "weight_decay_groups"]
