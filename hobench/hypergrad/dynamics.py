"""Training dynamics as pure functions over pytrees, in the style of optax.

A `Dynamics` is the map Φ of DESIGN.md section 1: `init(params, hp) -> state` and
`step(state, hp, batch) -> state`. The hyperparameters `hp` are a dict of tensors and enter every
computation as tensors, so forward mode (jvp) and reverse mode (vjp) both differentiate them.

Each optimiser hyperparameter (learning rate, momentum, Adam betas) is given either as a float
(held fixed) or as the name of an entry of `hp` (tuned). Hyperparameters inside the training loss
(weight decay, per-example weights, an auxiliary-loss weight) are read by the loss itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import grad
from torch.utils._pytree import tree_map

Params = Any  # a pytree of tensors
State = dict[str, Any]
HP = dict[str, torch.Tensor]
Loss = Callable[[Params, HP, Any], torch.Tensor]  # J(params, hp, batch) -> scalar
Spec = float | str  # a fixed value or the name of a tuned hyperparameter


@dataclass(frozen=True)
class Dynamics:
    """Φ as a pair of pure functions, plus where the weights live in the state. `loss` is the
    training loss J the steps descend, for methods that need it beyond Φ (the Hessian of the
    implicit hypergradients); None where Φ is given without one."""

    init: Callable[[Params, HP], State]
    step: Callable[[State, HP, Any], State]
    loss: Loss | None = None
    # The weights J is minimised over, and the map back to the whole model, where the model
    # holds more than weights (a module's buffers, held fixed by implicit differentiation);
    # None: the model is its weights.
    split: Callable[[Params], tuple[Params, Callable[[Params], Params]]] | None = None

    @staticmethod
    def params(state: State) -> Params:
        return state["w"]


def value(hp: HP, spec: Spec) -> torch.Tensor | float:
    """The value of a hyperparameter given as a fixed float or the name of an entry of `hp`."""
    if isinstance(spec, str):
        if spec not in hp:
            raise KeyError(f"hyperparameter {spec!r} not in hp (has {sorted(hp)})")
        return hp[spec]
    return spec


@dataclass(frozen=True)
class Rule:
    """An optimiser as a pair of pure functions, in the style of optax: `init(weights)` gives its
    slots (velocity, Adam's moments) and `update(weights, slots, gradient, hp)` the next weights
    and slots. `descend` and `descend_module` turn a rule and a loss into a Dynamics."""

    init: Callable[[Params], State]
    update: Callable[[Params, State, Params, HP], tuple[Params, State]]


def descend(loss: Loss, rule: Rule) -> Dynamics:
    """Φ(s, λ) = the rule's update along ∇J(w, λ, batch): the state is {"w": weights, **slots}."""

    def init(params: Params, hp: HP) -> State:
        return {"w": params, **rule.init(params)}

    def step(state: State, hp: HP, batch: Any) -> State:
        g = grad(loss)(state["w"], hp, batch)
        slots = {k: v for k, v in state.items() if k != "w"}
        w, slots = rule.update(state["w"], slots, g, hp)
        return {"w": w, **slots}

    return Dynamics(init, step, loss)


# J of a module model {"params": P, "buffers": B}, returning the buffers its forward pass moved
# (BatchNorm's running statistics) beside the loss: (J, B').
ModuleLoss = Callable[[Params, HP, Any], tuple[torch.Tensor, Params]]


def descend_module(loss: ModuleLoss, rule: Rule) -> Dynamics:
    """Φ for a module model: the rule moves the parameters along ∇_P J, and the buffers become
    the ones the training forward pass computed. State: {"w": {"params": P, "buffers": B},
    **slots}, so E, the evaluation and both differentiation modes see the buffers as state."""

    def init(model: Params, hp: HP) -> State:
        return {"w": model, **rule.init(model["params"])}

    def step(state: State, hp: HP, batch: Any) -> State:
        model = state["w"]

        def of_params(params):
            return loss({"params": params, "buffers": model["buffers"]}, hp, batch)

        g, buffers = grad(of_params, has_aux=True)(model["params"])
        slots = {k: v for k, v in state.items() if k != "w"}
        params, slots = rule.update(model["params"], slots, g, hp)
        return {"w": {"params": params, "buffers": buffers}, **slots}

    def training_loss(model: Params, hp: HP, batch: Any) -> torch.Tensor:
        return loss(model, hp, batch)[0]

    def split(model: Params):
        return model["params"], lambda params: {"params": params, "buffers": model["buffers"]}

    return Dynamics(init, step, training_loss, split)


def sgd_rule(lr: Spec = "lr") -> Rule:
    """w_t = w_{t-1} − η g."""

    def update(w, slots, g, hp):
        eta = value(hp, lr)
        return tree_map(lambda w, gw: w - eta * gw, w, g), slots

    return Rule(lambda params: {}, update)


def momentum_rule(lr: Spec = "lr", mu: Spec = "momentum") -> Rule:
    """Heavy-ball momentum, paper eqs. 3–4 (and torch.optim.SGD's, dampening 0):
    v_t = μ v_{t-1} + g;  w_t = w_{t-1} − η v_t."""

    def update(w, slots, g, hp):
        eta, m = value(hp, lr), value(hp, mu)
        v = tree_map(lambda v, gw: m * v + gw, slots["v"], g)
        return tree_map(lambda w, vw: w - eta * vw, w, v), {"v": v}

    return Rule(lambda params: {"v": tree_map(torch.zeros_like, params)}, update)


def adam_rule(lr: Spec = "lr", beta1: Spec = 0.9, beta2: Spec = 0.999, eps: float = 1e-8) -> Rule:
    """Adam with bias correction, dividing by sqrt(v̂ + ε²) (see `adam`)."""

    def init(params):
        zeros = tree_map(torch.zeros_like, params)
        first = next(iter(torch.utils._pytree.tree_leaves(params)))
        count = torch.zeros((), dtype=first.dtype, device=first.device)
        return {"m": zeros, "v": tree_map(torch.zeros_like, params), "count": count}

    def update(w, slots, g, hp):
        eta, b1, b2 = value(hp, lr), value(hp, beta1), value(hp, beta2)
        count = slots["count"] + 1
        m = tree_map(lambda m, gw: b1 * m + (1 - b1) * gw, slots["m"], g)
        v = tree_map(lambda v, gw: b2 * v + (1 - b2) * gw * gw, slots["v"], g)
        m_correction = 1 - b1**count
        v_correction = 1 - b2**count

        def move(w, mw, vw):
            return w - eta * (mw / m_correction) / torch.sqrt(vw / v_correction + eps**2)

        return tree_map(move, w, m, v), {"m": m, "v": v, "count": count}

    return Rule(init, update)


def gd(loss: Loss, lr: Spec = "lr") -> Dynamics:
    """Plain gradient descent: w_t = w_{t-1} − η ∇J_t(w_{t-1})."""
    return descend(loss, sgd_rule(lr))


def scheduled_gd(loss: Loss, steps: int, pieces: int, lr: str = "lr") -> Dynamics:
    """Gradient descent with a step-size schedule: w_t = w_{t-1} − η_{p(t)} ∇J_t(w_{t-1}).

    η = hp[lr] holds `pieces` step sizes (m); step t of the `steps` (T) uses piece
    p(t) = ⌊(t − 1)·m / T⌋, so m = T is one step size per step (a run past T holds the last).
    Φ_t depends on t, so the batch carries it: `batch_at(t)` returns (t, batch) and J sees
    `batch`.
    """
    if not 1 <= pieces <= steps:
        raise ValueError(f"pieces must be in 1..steps={steps}, got {pieces}")

    def init(params: Params, hp: HP) -> State:
        return {"w": params}

    def step(state: State, hp: HP, batch: Any) -> State:
        t, inner_batch = batch
        eta = value(hp, lr)[min((t - 1) * pieces // steps, pieces - 1)]
        g = grad(loss)(state["w"], hp, inner_batch)
        return {"w": tree_map(lambda w, gw: w - eta * gw, state["w"], g)}

    def training_loss(params: Params, hp: HP, batch: Any) -> torch.Tensor:
        return loss(params, hp, batch[1])  # the batch carries its step: (t, batch)

    return Dynamics(init, step, training_loss)


def momentum(loss: Loss, lr: Spec = "lr", mu: Spec = "momentum") -> Dynamics:
    """Heavy-ball momentum exactly as paper eqs. 3–4.

    v_t = μ v_{t-1} + ∇J_t(w_{t-1});  w_t = w_{t-1} − η v_t.
    """
    return descend(loss, momentum_rule(lr, mu))


def adam(
    loss: Loss,
    lr: Spec = "lr",
    beta1: Spec = 0.9,
    beta2: Spec = 0.999,
    eps: float = 1e-8,
) -> Dynamics:
    """Adam with bias correction.

    The update divides by sqrt(v̂ + ε²) rather than sqrt(v̂) + ε: the square root's derivative is
    infinite at 0, so the usual placement gives 0·∞ = NaN in both differentiation modes whenever a
    gradient entry is exactly zero. With ε inside, the map is smooth and differs by O(ε).
    """
    return descend(loss, adam_rule(lr, beta1, beta2, eps))


def reparametrized(dynamics: Dynamics, natural: Callable[[HP], HP]) -> Dynamics:
    """The same Φ with λ given in another coordinate (e.g. log η): `natural` maps the tuned
    coordinates to the ones the dynamics reads. Both differentiation modes pass through it."""
    loss = dynamics.loss
    return Dynamics(
        init=lambda params, hp: dynamics.init(params, natural(hp)),
        step=lambda state, hp, batch: dynamics.step(state, natural(hp), batch),
        loss=None if loss is None else lambda params, hp, batch: loss(params, natural(hp), batch),
        split=dynamics.split,
    )
