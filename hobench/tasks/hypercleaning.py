"""Data hyper-cleaning (paper section 5.1): learn one weight per training example.

Softmax regression trained by full-batch gradient descent on mean(λ ⊙ CE) over a training set
whose labels are half corrupted; the outer loss is the unweighted validation cross-entropy; λ
lives in {0 ≤ λ ≤ 1, Σλ ≤ R}. The final protocol keeps the examples with λ_i > 0 and retrains on
them plus the validation set (DH-R); Oracle (clean examples + validation) and Baseline (all +
validation) are the reference rows, and the F1 score compares the discarded set with the
corrupted one.

The raw λ (thousands of entries) is not searchable by grid or TPE, so black-box strategies get
an honest low-dimensional family instead: score every training example by its loss under a
model trained on the (clean) validation set, keep the `keep_fraction` of lowest-loss examples,
and train on them with L2 weight `l2`. It is the same final protocol with a simpler cleaner.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from hobench.data import corrupt_labels, load_mnist, split_indices, to_tensors
from hobench.hypergrad import gd, unroll
from hobench.registry import TASKS
from hobench.tasks.base import Evaluation, GradientProblem, HyperParam, Task
from hobench.tasks.common import classification_metrics, resolve_dtype
from hobench.tasks.projection import project_capped_simplex

CLASSES = 10


def f1_score(predicted: np.ndarray, actual: np.ndarray) -> float:
    """F1 of a predicted index set against the true one (both arrays of indices)."""
    hits = len(np.intersect1d(predicted, actual))
    if hits == 0:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(actual)
    return 2 * precision * recall / (precision + recall)


@TASKS.register("hypercleaning")
class HyperCleaning(Task):
    def __init__(
        self,
        *,
        seed: int = 0,
        device: str = "cpu",
        data_dir: str | None = None,
        source: str = "embedded",
        n_train: int = 1250,
        n_val: int = 1250,
        n_test: int = 2500,
        n_corrupt: int = 625,
        radius: float = 625.0,
        steps: int = 100,
        lr: float = 1.0,
        final_steps: int = 300,
        hyper_lr: float = 0.05,
        dtype: str = "float32",
    ) -> None:
        if not 0 <= n_corrupt <= n_train:
            raise ValueError(f"n_corrupt must be in 0..n_train={n_train}, got {n_corrupt}")
        if not 0 < radius <= n_train:
            raise ValueError(f"radius must be in (0, n_train={n_train}], got {radius}")
        self.device, self.dtype = torch.device(device), resolve_dtype(dtype)
        self.steps, self.lr, self.final_steps = steps, lr, final_steps
        self.radius, self.hyper_lr = radius, hyper_lr

        X, y = load_mnist(source, data_dir=data_dir)
        train, val, test = split_indices(len(y), [n_train, n_val, n_test], seed)
        y_train, self.corrupted = corrupt_labels(y[train], n_corrupt, CLASSES, seed)
        self.source = source
        self.train = to_tensors(X[train], y_train, self.device, self.dtype)
        self.val = to_tensors(X[val], y[val], self.device, self.dtype)
        self.test = to_tensors(X[test], y[test], self.device, self.dtype)
        self.dynamics = gd(self._inner, lr=lr)
        self._scores: torch.Tensor | None = None

    # --- training -----------------------------------------------------------------------------
    @staticmethod
    def _inner(params, hp, batch):
        """mean(λ ⊙ CE) + ½ l2 ‖W‖² over the batch (X, y)."""
        (W, b), (X, y) = params, batch
        ce = F.cross_entropy(F.linear(X, W, b), y, reduction="none")
        return (hp["weights"] * ce).mean() + 0.5 * hp.get("l2", 0.0) * (W * W).sum()

    def _outer(self, params, hp):
        return F.cross_entropy(F.linear(self.val[0], *params), self.val[1])

    def _params0(self):
        d = self.train[0].shape[1]
        zeros = dict(dtype=self.dtype, device=self.device)
        return torch.zeros(CLASSES, d, **zeros), torch.zeros(CLASSES, **zeros)

    def _fit(self, X, y, weights, steps: int, l2: float = 0.0):
        """Train softmax regression from zero weights; the same map Φ gradient strategies use."""
        hp = {"weights": weights, "l2": torch.tensor(l2, dtype=self.dtype, device=self.device)}
        state = self.dynamics.init(self._params0(), hp)
        return unroll(self.dynamics, state, hp, steps, lambda t: (X, y), keep_last=0)[-1]["w"]

    def _ones(self, n: int) -> torch.Tensor:
        return torch.ones(n, dtype=self.dtype, device=self.device)

    def _test_acc(self, params) -> float:
        return classification_metrics(F.linear(self.test[0], *params), self.test[1])[1]

    def _metrics(self, params) -> Evaluation:
        val_loss, val_acc = classification_metrics(F.linear(self.val[0], *params), self.val[1])
        return Evaluation(val_loss, val_acc, self._test_acc(params), steps=self.steps)

    def _retrain_with_validation(self, keep: torch.Tensor, steps: int, l2: float = 0.0) -> float:
        """Test accuracy after training on the kept training examples plus the validation set."""
        X = torch.cat([self.train[0][keep], self.val[0]])
        y = torch.cat([self.train[1][keep], self.val[1]])
        return self._test_acc(self._fit(X, y, self._ones(len(y)), steps, l2))

    # --- the black-box family -----------------------------------------------------------------
    def _validation_scores(self) -> torch.Tensor:
        """Loss of each training example under a model trained on the validation set alone."""
        if self._scores is None:
            params = self._fit(*self.val, self._ones(len(self.val[1])), self.final_steps)
            logits = F.linear(self.train[0], *params)
            self._scores = F.cross_entropy(logits, self.train[1], reduction="none")
        return self._scores

    def _kept_by_rule(self, keep_fraction: float) -> torch.Tensor:
        n = len(self.train[1])
        count = max(1, min(n, math.ceil(keep_fraction * n)))
        return torch.argsort(self._validation_scores(), stable=True)[:count]

    def space(self) -> list[HyperParam]:
        return [
            HyperParam(
                "keep_fraction",
                0.2,
                1.0,
                default=1.0,
                doc="fraction of training examples kept, lowest validation-model loss first",
            ),
            HyperParam("l2", 1e-6, 1e-1, default=1e-6, log=True, doc="L2 weight of the model"),
        ]

    def steps_per_evaluation(self) -> int:
        return self.steps

    def evaluate(self, config: dict[str, float]) -> Evaluation:
        keep = self._kept_by_rule(config["keep_fraction"])
        params = self._fit(
            self.train[0][keep],
            self.train[1][keep],
            self._ones(len(keep)),
            self.steps,
            config["l2"],
        )
        return self._metrics(params)

    def finalize_config(self, config: dict[str, float]) -> dict:
        keep = self._kept_by_rule(config["keep_fraction"])
        return self._final_metrics(keep, self.evaluate(config), l2=config["l2"])

    # --- the gradient problem -----------------------------------------------------------------
    def gradient_problem(self, start: str = "default") -> GradientProblem:
        n = len(self.train[1])
        # A feasible, uninformed start: every example weighted alike with Σλ = R.
        hp0 = {
            "weights": torch.full(
                (n,), min(1.0, self.radius / n), dtype=self.dtype, device=self.device
            )
        }
        return GradientProblem(
            dynamics=self.dynamics,
            params0=self._params0,
            hp0=hp0,
            steps=self.steps,
            batch_at=lambda t: self.train,
            outer=self._outer,
            project=lambda hp: {"weights": project_capped_simplex(hp["weights"], self.radius)},
            evaluate=lambda params, hp: self._metrics(params),
            hyper_lr=self.hyper_lr,
        )

    def finalize(self, hp: dict[str, torch.Tensor]) -> dict:
        weights = hp["weights"].detach()
        keep = torch.nonzero(weights > 0).flatten()
        params = self._fit(*self.train, weights, self.steps)
        out = self._final_metrics(keep, self._metrics(params))
        out["lambda_clean"] = [round(float(v), 4) for v in weights[self._clean_mask()]]
        out["lambda_corrupted"] = [round(float(v), 4) for v in weights[~self._clean_mask()]]
        return out

    def _clean_mask(self) -> torch.Tensor:
        mask = torch.ones(len(self.train[1]), dtype=torch.bool, device=self.device)
        mask[torch.as_tensor(self.corrupted, device=self.device)] = False
        return mask

    def _final_metrics(self, keep: torch.Tensor, inner: Evaluation, l2: float = 0.0) -> dict:
        removed = np.setdiff1d(np.arange(len(self.train[1])), keep.cpu().numpy())
        return {
            "val_loss": inner.val_loss,
            "val_acc": inner.val_acc,
            "test_acc": self._retrain_with_validation(keep, self.final_steps, l2),
            "kept": int(len(keep)),
            "f1": f1_score(removed, self.corrupted),
            "rows": self.references(),
        }

    def references(self) -> dict[str, dict[str, float]]:
        """Oracle: train on the clean examples + validation. Baseline: on all + validation."""
        if not hasattr(self, "_references"):
            everything = torch.arange(len(self.train[1]), device=self.device)
            clean = torch.nonzero(self._clean_mask()).flatten()
            self._references = {
                "Oracle": {
                    "test_acc": self._retrain_with_validation(clean, self.final_steps),
                    "f1": 1.0,
                },
                "Baseline": {
                    "test_acc": self._retrain_with_validation(everything, self.final_steps)
                },
            }
        return self._references
