"""Stochastic bilevel oracles and the solvers' iterations (DESIGN.md section 6).

The problem: min_λ f(λ) = F(z*(λ), λ) with z*(λ) = argmin_z G(z, λ), G strongly convex in z.
By the implicit function theorem the hypergradient is

    ∇f = ∂_λ F − (∂_λ ∇_z G)ᵀ v,   v solving ∇²_zz G · v = ∇_z F,

all read at z*(λ). G is the task's training loss J on a minibatch, F its validation loss E (on
a minibatch where the task has them); z is the weights as one flat vector. Every oracle is a
gradient, a Hessian-vector product or a cross-derivative product by `torch.func`, never a
matrix: `inner_products` gives ∇_z G, ∇²_zz G · v and (∂_λ ∇_z G)ᵀ v from one vector-Jacobian
product of the map (z, λ) ↦ ∇_z G (the Hessian is symmetric).

The iterations below read like their algorithm boxes; the strategies
(`hobench.strategies.bilevel`) draw the minibatches, step λ and keep the budget:

- `soba_step` (Dagréou et al., NeurIPS 2022): one step on each of z, v, and λ's direction;
  `saba_step`, its variance-reduced twin, replaces each oracle by its SAGA estimate.
- `amigo_step` (Arbel & Mairal, ICLR 2022): k warm-started SGD steps on z, then k on the
  quadratic ½ vᵀ∇²G v − ∇_z F · v, then λ's direction.
- `f2sa_step` (Kwon et al., ICML 2023): first-order only, through the value-function penalty
  F(y, λ) + ρ (G(y, λ) − min_z G(z, λ)): k steps on z (G) and on y (G + F/ρ), then the
  direction ∂_λ F(y) + ρ (∂_λ G(y) − ∂_λ G(z)), whose bias falls as 1/ρ.
- `zero_order_gradient`: antithetic Gaussian differences of whole inner runs; needs nothing
  differentiable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import grad, vjp

from hobench.hypergrad.dynamics import HP
from hobench.hypergrad.implicit import _ravel

# G(z, λ, batch) and F(z, λ, batch) over the flat weights z.
FlatLoss = Callable[[torch.Tensor, HP, Any], torch.Tensor]


@dataclass(frozen=True)
class Bilevel:
    """The two losses over flat weights, and the map back to the task's weights.

    `inner(z, hp, batch)` is G (the task's training loss J), `outer(z, hp, batch)` is F (E on a
    validation minibatch, or on the whole set where `batch` is None); `unravel(z)` gives the
    task's weights (a pytree)."""

    inner: FlatLoss
    outer: FlatLoss
    unravel: Callable[[torch.Tensor], Any]


def flat_problem(loss, outer_on, params) -> tuple[Bilevel, torch.Tensor]:
    """A `Bilevel` from the task's J(params, hp, batch) and E(params, hp, batch), and the flat
    start z_0 of the weights `params`."""
    z0, unravel = _ravel(params)
    return (
        Bilevel(
            inner=lambda z, hp, batch: loss(unravel(z), hp, batch),
            outer=lambda z, hp, batch: outer_on(unravel(z), hp, batch),
            unravel=unravel,
        ),
        z0.detach(),
    )


# --- oracles ------------------------------------------------------------------------------------
def inner_grad(p: Bilevel, z: torch.Tensor, hp: HP, batch: Any) -> torch.Tensor:
    """∇_z G(z, λ) on `batch`."""
    return grad(p.inner)(z, hp, batch)


def inner_hp_grad(p: Bilevel, z: torch.Tensor, hp: HP, batch: Any) -> dict[str, torch.Tensor]:
    """∂_λ G(z, λ) on `batch` (F2SA's penalty gradient)."""
    return grad(p.inner, argnums=1)(z, hp, batch)


def outer_grads(
    p: Bilevel, z: torch.Tensor, hp: HP, batch: Any
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(∇_z F, ∂_λ F) on the validation `batch`."""
    return grad(p.outer, argnums=(0, 1))(z, hp, batch)


def inner_products(
    p: Bilevel, z: torch.Tensor, hp: HP, batch: Any, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(∇_z G, ∇²_zz G · v, (∂_λ ∇_z G)ᵀ v) on `batch`: one vector-Jacobian product of
    (z, λ) ↦ ∇_z G with the cotangent v (∇²_zz G is symmetric, so vᵀ∇²G = ∇²G v)."""
    gradient, pull = vjp(lambda x, h: grad(p.inner)(x, h, batch), z, hp)
    hessian_v, cross_v = pull(v)
    return gradient, hessian_v, cross_v


def implicit_direction(
    outer_hp_grad: dict[str, torch.Tensor], cross_v: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """∂_λ F − (∂_λ ∇_z G)ᵀ v: the hypergradient when z = z*(λ) and ∇²G v = ∇_z F."""
    return {k: (outer_hp_grad[k] - cross_v[k]).detach() for k in outer_hp_grad}


# --- iterations ---------------------------------------------------------------------------------
def soba_step(
    p: Bilevel,
    z: torch.Tensor,
    v: torch.Tensor,
    hp: HP,
    batch: Any,
    val_batch: Any,
    step: float,
    v_step: float,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One SOBA iteration. Inputs: z, v, λ, a training and a validation minibatch, the step
    sizes of z (on G) and of v (on ½ vᵀ∇²G v − ∇_z F · v). Output: (z', v', λ's direction),
    all three read at the same (z, v):

        z' = z − ρ ∇_z G;   v' = v − ρ_v (∇²_zz G v − ∇_z F);   d = ∂_λ F − (∂_λ ∇_z G)ᵀ v.
    """
    dz_F, dhp_F = outer_grads(p, z, hp, val_batch)
    dz_G, hessian_v, cross_v = inner_products(p, z, hp, batch, v)
    z_next = (z - step * dz_G).detach()
    v_next = (v - v_step * (hessian_v - dz_F)).detach()
    return z_next, v_next, implicit_direction(dhp_F, cross_v)


def amigo_step(
    p: Bilevel,
    z: torch.Tensor,
    v: torch.Tensor,
    hp: HP,
    batches: Iterator[Any],
    val_batch: Any,
    inner_steps: int,
    step: float,
    v_step: float,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One AmIGO iteration. Inputs: z and v (warm starts), λ, an iterator of training
    minibatches (2k + 1 are drawn), a validation minibatch, k = `inner_steps` and the step
    sizes. Output: (z_k, v_k, λ's direction):

        k times: z ← z − ρ ∇_z G(z; batch);
        k times: v ← v − ρ_v (∇²_zz G(z_k; batch) v − ∇_z F(z_k));
        d = ∂_λ F(z_k) − (∂_λ ∇_z G(z_k; batch))ᵀ v_k.
    """
    for _ in range(inner_steps):
        z = (z - step * inner_grad(p, z, hp, next(batches))).detach()
    dz_F, dhp_F = outer_grads(p, z, hp, val_batch)
    for _ in range(inner_steps):
        _, hessian_v, _ = inner_products(p, z, hp, next(batches), v)
        v = (v - v_step * (hessian_v - dz_F)).detach()
    _, _, cross_v = inner_products(p, z, hp, next(batches), v)
    return z, v, implicit_direction(dhp_F, cross_v)


def f2sa_step(
    p: Bilevel,
    z: torch.Tensor,
    y: torch.Tensor,
    hp: HP,
    batches: Iterator[Any],
    val_batches: Iterator[Any],
    inner_steps: int,
    step: float,
    penalty: float,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One F2SA iteration (first-order: gradients only). Inputs: z (tracks argmin G), y (tracks
    argmin G + F/ρ), λ, training and validation minibatch iterators, k = `inner_steps`, the
    step size ρ_z of both and the penalty ρ. Output: (z_k, y_k, λ's direction):

        k times: z ← z − ρ_z ∇_z G(z);  y ← y − ρ_z (∇_z G(y) + ∇_z F(y) / ρ);
        d = ∂_λ F(y) + ρ (∂_λ G(y) − ∂_λ G(z)).
    """
    for _ in range(inner_steps):
        batch = next(batches)
        dz_F, _ = outer_grads(p, y, hp, next(val_batches))
        z = (z - step * inner_grad(p, z, hp, batch)).detach()
        y = (y - step * (inner_grad(p, y, hp, batch) + dz_F / penalty)).detach()
    batch = next(batches)
    _, dhp_F = outer_grads(p, y, hp, next(val_batches))
    at_y, at_z = inner_hp_grad(p, y, hp, batch), inner_hp_grad(p, z, hp, batch)
    return z, y, {k: (dhp_F[k] + penalty * (at_y[k] - at_z[k])).detach() for k in hp}


def zero_order_gradient(
    f: Callable[[HP], float],
    hp: HP,
    sigma: float,
    directions: int,
    gen: torch.Generator,
    scale: dict[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """Antithetic Gaussian estimate of ∇f(λ) from 2M values of f (M = `directions`):

        ĝ = 1/M Σ_m (f(λ + σ s ⊙ u_m) − f(λ − σ s ⊙ u_m)) / (2σ) · u_m / s,   u_m ~ N(0, I),

    s = `scale[name]` (1 by default) the width each hyperparameter is perturbed on. Unbiased
    for the gradient of the Gaussian smoothing of f, hence for ∇f itself when f is quadratic.
    Inputs: f (a whole inner run and its validation loss), λ, σ, M, a seeded generator."""
    scale = scale or {}
    total = {k: torch.zeros_like(v) for k, v in hp.items()}
    for _ in range(directions):
        u = {
            k: torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device)
            for k, v in hp.items()
        }
        plus = {k: hp[k] + sigma * scale.get(k, 1.0) * u[k] for k in hp}
        minus = {k: hp[k] - sigma * scale.get(k, 1.0) * u[k] for k in hp}
        difference = (f(plus) - f(minus)) / (2 * sigma)
        for k in hp:
            total[k] += difference * u[k] / scale.get(k, 1.0)
    return {k: t / directions for k, t in total.items()}


class SagaTable:
    """SAGA's memory of one oracle over a fixed partition of the data into P minibatches: the
    last value seen for each, and their mean. `estimate(i, fresh)` returns
    fresh − memory[i] + mean(memory) (unbiased for the full-data oracle over a uniform i) and
    stores `fresh` as memory[i]. The memory starts at 0 (no full pass first)."""

    def __init__(self, batches: int, like: torch.Tensor) -> None:
        self.memory = torch.zeros((batches, *like.shape), dtype=like.dtype, device=like.device)
        self.mean = torch.zeros_like(like)

    def estimate(self, i: int, fresh: torch.Tensor) -> torch.Tensor:
        out = fresh - self.memory[i] + self.mean
        self.mean = self.mean + (fresh - self.memory[i]) / len(self.memory)
        self.memory[i] = fresh
        return out.detach()


def saba_step(
    p: Bilevel,
    z: torch.Tensor,
    v: torch.Tensor,
    hp: HP,
    batch: tuple[int, Any],
    val_batch: tuple[int, Any],
    tables: dict[str, SagaTable],
    step: float,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One SABA iteration (Dagréou et al., NeurIPS 2022): SOBA's, with each of its five oracles
    replaced by its SAGA estimate. Inputs: z, v, λ, the training minibatch (i, batch) and the
    validation one (j, batch) drawn uniformly from fixed partitions, the SAGA tables
    (`saba_tables`), the step size of z and v. Output: (z', v', λ's direction):

        D_G, D_Hv, D_cross = SAGA_i(∇_z G, ∇²G v, (∂_λ∇_z G)ᵀ v);
        D_Fz, D_Fλ = SAGA_j(∇_z F, ∂_λ F);
        z' = z − ρ D_G;   v' = v − ρ (D_Hv − D_Fz);   d = D_Fλ − D_cross.
    """
    (i, train), (j, val) = batch, val_batch
    unravel_hp = _ravel(hp)[1]
    dz_F, dhp_F = outer_grads(p, z, hp, val)
    dz_G, hessian_v, cross_v = inner_products(p, z, hp, train, v)
    d_G = tables["G"].estimate(i, dz_G)
    d_Hv = tables["Hv"].estimate(i, hessian_v)
    d_cross = tables["cross"].estimate(i, _ravel(cross_v)[0])
    d_Fz = tables["Fz"].estimate(j, dz_F)
    d_Fl = tables["Fl"].estimate(j, _ravel(dhp_F)[0])
    z_next = (z - step * d_G).detach()
    v_next = (v - step * (d_Hv - d_Fz)).detach()
    return z_next, v_next, unravel_hp(d_Fl - d_cross)


def saba_tables(z: torch.Tensor, hp: HP, batches: int, val_batches: int) -> dict[str, SagaTable]:
    """Empty SAGA tables for `saba_step`: P training and P' validation minibatches."""
    hp_flat = _ravel(hp)[0]
    return {
        "G": SagaTable(batches, z),
        "Hv": SagaTable(batches, z),
        "cross": SagaTable(batches, hp_flat),
        "Fz": SagaTable(val_batches, z),
        "Fl": SagaTable(val_batches, hp_flat),
    }
