"""Small float64 problems on which the hypergradients are checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hobench.hypergrad import Dynamics, adam, gd, momentum

DTYPE = torch.float64


@dataclass
class Problem:
    dynamics: Dynamics
    s0: Any
    hp: dict[str, torch.Tensor]
    batch_at: Any
    outer: Any


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ridge(seed: int = 0, n: int = 30, d: int = 6) -> tuple[Problem, dict]:
    """GD on ½‖Xw − y‖²/n + ½λ‖w‖², tuning (η, λ); validation ½‖X_v w − y_v‖²/n."""
    g = _gen(seed)
    X, Xv = torch.randn(n, d, generator=g, dtype=DTYPE), torch.randn(n, d, generator=g, dtype=DTYPE)
    w_true = torch.randn(d, generator=g, dtype=DTYPE)
    y = X @ w_true + 0.5 * torch.randn(n, generator=g, dtype=DTYPE)
    yv = Xv @ w_true + 0.5 * torch.randn(n, generator=g, dtype=DTYPE)

    def inner(w, hp, batch):
        return 0.5 * ((X @ w - y) ** 2).mean() + 0.5 * hp["l2"] * (w * w).sum()

    def outer(w, hp):
        return 0.5 * ((Xv @ w - yv) ** 2).mean()

    dyn = gd(inner, lr="lr")
    hp = {"lr": torch.tensor(0.1, dtype=DTYPE), "l2": torch.tensor(0.3, dtype=DTYPE)}
    w0 = torch.randn(d, generator=g, dtype=DTYPE)
    data = {"X": X, "y": y, "Xv": Xv, "yv": yv, "w0": w0}
    return Problem(dyn, dyn.init(w0, hp), hp, lambda t: None, outer), data


def ridge_closed_form(data: dict, lr: float, l2: float, T: int) -> dict[str, torch.Tensor]:
    """∂f/∂η and ∂f/∂λ of f = E(w_T) in closed form.

    With H = XᵀX/n + λI and w* = H⁻¹Xᵀy/n, GD gives w_T = w* + (I − ηH)^T (w_0 − w*), hence
    dw_T/dλ = (I − (I − ηH)^T) dw*/dλ − ηT (I − ηH)^{T−1} (w_0 − w*),  dw*/dλ = −H⁻¹ w*,
    dw_T/dη = −T H (I − ηH)^{T−1} (w_0 − w*).
    """
    X, y, Xv, yv, w0 = (data[k] for k in ("X", "y", "Xv", "yv", "w0"))
    n, d = X.shape
    eye = torch.eye(d, dtype=DTYPE)
    H = X.T @ X / n + l2 * eye
    w_star = torch.linalg.solve(H, X.T @ y / n)
    M = eye - lr * H
    M_T, M_T1 = torch.linalg.matrix_power(M, T), torch.linalg.matrix_power(M, T - 1)
    w_T = w_star + M_T @ (w0 - w_star)
    dw_star = -torch.linalg.solve(H, w_star)
    dw_dl2 = (eye - M_T) @ dw_star - lr * T * M_T1 @ (w0 - w_star)
    dw_dlr = -T * H @ M_T1 @ (w0 - w_star)
    grad_E = Xv.T @ (Xv @ w_T - yv) / n
    return {"lr": grad_E @ dw_dlr, "l2": grad_E @ dw_dl2}


def ridge_solution(data: dict, l2: float) -> tuple[torch.Tensor, dict[str, torch.Tensor], float]:
    """(w*, the implicit hypergradient of E(w*(λ)), the largest Hessian eigenvalue L).

    w* = H⁻¹Xᵀy/n with H = XᵀX/n + λI does not depend on η, and dw*/dλ = −H⁻¹w*, so
    ∂f/∂η = 0 and ∂f/∂λ = −∇E(w*)ᵀ H⁻¹ w*.
    """
    X, y, Xv, yv = (data[k] for k in ("X", "y", "Xv", "yv"))
    n, d = X.shape
    H = X.T @ X / n + l2 * torch.eye(d, dtype=DTYPE)
    w_star = torch.linalg.solve(H, X.T @ y / n)
    grad_E = Xv.T @ (Xv @ w_star - yv) / n
    expected = {"lr": torch.tensor(0.0, dtype=DTYPE), "l2": -grad_E @ torch.linalg.solve(H, w_star)}
    return w_star, expected, float(torch.linalg.eigvalsh(H)[-1])


def weighted_softmax(seed: int = 1, n: int = 40, d: int = 5, c: int = 3) -> Problem:
    """Softmax regression, inner loss mean(λ ⊙ CE), tuning one weight per example and η."""
    g = _gen(seed)
    X, Xv = torch.randn(n, d, generator=g, dtype=DTYPE), torch.randn(n, d, generator=g, dtype=DTYPE)
    y, yv = torch.randint(0, c, (n,), generator=g), torch.randint(0, c, (n,), generator=g)

    def inner(p, hp, batch):
        W, b = p
        return (hp["weights"] * F.cross_entropy(F.linear(X, W, b), y, reduction="none")).mean()

    def outer(p, hp):
        return F.cross_entropy(F.linear(Xv, *p), yv)

    dyn = gd(inner, lr="lr")
    hp = {
        "lr": torch.tensor(0.5, dtype=DTYPE),
        "weights": torch.rand(n, generator=g, dtype=DTYPE),
    }
    p0 = (0.1 * torch.randn(c, d, generator=g, dtype=DTYPE), torch.zeros(c, dtype=DTYPE))
    return Problem(dyn, dyn.init(p0, hp), hp, lambda t: None, outer)


def mlp_momentum(seed: int = 2, n: int = 24, d: int = 4, h: int = 6, c: int = 3) -> Problem:
    """A small tanh MLP with a primary softmax head and an auxiliary regression head, trained by
    heavy-ball momentum on minibatches that change with t; tunes η, μ and the aux weight ρ."""
    g = _gen(seed)
    X = torch.randn(n, d, generator=g, dtype=DTYPE)
    y = torch.randint(0, c, (n,), generator=g)
    aux = torch.randn(n, 2, generator=g, dtype=DTYPE)
    Xv, yv = torch.randn(n, d, generator=g, dtype=DTYPE), torch.randint(0, c, (n,), generator=g)

    def net(p, x):
        W1, b1, W2, b2, Wa = p
        hidden = torch.tanh(F.linear(x, W1, b1))
        return F.linear(hidden, W2, b2), F.linear(hidden, Wa)

    def inner(p, hp, batch):
        idx = batch
        logits, pred = net(p, X[idx])
        return F.cross_entropy(logits, y[idx]) + hp["rho"] * 0.5 * ((pred - aux[idx]) ** 2).mean()

    def outer(p, hp):
        return F.cross_entropy(net(p, Xv)[0], yv)

    def batch_at(t: int) -> torch.Tensor:
        # A different minibatch each step, reproducible from t alone (replay on the way back).
        return torch.randperm(n, generator=_gen(1000 + t))[:8]

    dyn = momentum(inner, lr="lr", mu="momentum")
    hp = {
        "lr": torch.tensor(0.3, dtype=DTYPE),
        "momentum": torch.tensor(0.6, dtype=DTYPE),
        "rho": torch.tensor(0.8, dtype=DTYPE),
    }
    shapes = [(h, d), (h,), (c, h), (c,), (2, h)]
    p0 = tuple(0.5 * torch.randn(s, generator=g, dtype=DTYPE) for s in shapes)
    return Problem(dyn, dyn.init(p0, hp), hp, batch_at, outer)


def adam_lr(seed: int = 3, n: int = 30, d: int = 5) -> Problem:
    """Adam on logistic regression tuning its learning rate and β1; one feature is all zeros, so
    its gradient is exactly 0 and the ε placement is exercised."""
    g = _gen(seed)
    X = torch.randn(n, d, generator=g, dtype=DTYPE)
    X[:, -1] = 0.0
    y = (torch.rand(n, generator=g, dtype=DTYPE) > 0.5).to(DTYPE)
    Xv = torch.randn(n, d, generator=g, dtype=DTYPE)
    yv = (torch.rand(n, generator=g, dtype=DTYPE) > 0.5).to(DTYPE)

    def inner(w, hp, batch):
        return F.binary_cross_entropy_with_logits(X @ w, y)

    def outer(w, hp):
        return F.binary_cross_entropy_with_logits(Xv @ w, yv)

    dyn = adam(inner, lr="lr", beta1="beta1")
    hp = {"lr": torch.tensor(0.05, dtype=DTYPE), "beta1": torch.tensor(0.8, dtype=DTYPE)}
    return Problem(dyn, dyn.init(torch.zeros(d, dtype=DTYPE), hp), hp, lambda t: None, outer)


def cleaning_l2(seed: int = 1, n: int = 40, d: int = 5, c: int = 3, lr: float = 1.5) -> Problem:
    """Hyper-cleaning made strongly convex: softmax regression on mean(λ ⊙ CE) + ½ρ‖W‖², tuning
    the per-example weights λ and the L2 weight ρ (η fixed), so T steps of gradient descent
    converge linearly to the unique minimiser the implicit hypergradients assume."""
    g = _gen(seed)
    X, Xv = torch.randn(n, d, generator=g, dtype=DTYPE), torch.randn(n, d, generator=g, dtype=DTYPE)
    y, yv = torch.randint(0, c, (n,), generator=g), torch.randint(0, c, (n,), generator=g)

    def inner(p, hp, batch):
        W, b = p
        ce = F.cross_entropy(F.linear(X, W, b), y, reduction="none")
        return (hp["weights"] * ce).mean() + 0.5 * hp["l2"] * ((W * W).sum() + (b * b).sum())

    def outer(p, hp):
        return F.cross_entropy(F.linear(Xv, *p), yv)

    dyn = gd(inner, lr=lr)
    hp = {
        "weights": torch.rand(n, generator=g, dtype=DTYPE),
        "l2": torch.tensor(0.2, dtype=DTYPE),
    }
    p0 = (0.1 * torch.randn(c, d, generator=g, dtype=DTYPE), torch.zeros(c, dtype=DTYPE))
    return Problem(dyn, dyn.init(p0, hp), hp, lambda t: None, outer)
