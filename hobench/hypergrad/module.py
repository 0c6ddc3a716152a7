"""Any `nn.Module` as a model of the engine: parameters and buffers as a pytree, the forward
pass through `torch.func.functional_call`, so Φ stays a pure function both modes differentiate.

The model is `{"params": P, "buffers": B}` (B: the module's floating-point buffers). A training
step runs the module in train mode and returns the buffers it moved beside its output; validation
and test run it in eval mode on the state's buffers. Two copies of the module are kept, one per
mode, so no call flips a mode flag.

BatchNorm's running statistics are state (they decide eval-mode outputs, so λ reaches E through
them too), but torch updates them in place inside the batch-norm kernel, invisibly to autograd
and forward mode, and its eval-mode kernel refuses a gradient for them. So each BatchNorm layer
of the copies is replaced by `StateNorm`, with the same parameters and buffers: in train mode it
normalises by the batch's statistics and hands its input back, and the update
r ← (1 − m)·r + m·(batch mean, unbiased batch variance) is computed here, differentiably — the
numbers `module.train(); loss.backward(); optimizer.step()` produces, now with derivatives; in
eval mode it normalises by the running statistics in plain tensor arithmetic.

Refused, with the reason: active dropout (a random mask drawn anew when reverse mode replays a
step, so the replayed step is not the one taken), BatchNorm with momentum=None (a cumulative
average over a step counter), and integer buffers other than BatchNorm's step counter.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

Model = dict[str, dict[str, torch.Tensor]]  # {"params": {name: tensor}, "buffers": {...}}
BATCH_NORMS = nn.modules.batchnorm._BatchNorm
RUNNING = ("running_mean", "running_var")


class ModuleError(ValueError):
    """A module the engine cannot train functionally; the message says why and the fix."""


def _check(module: nn.Module) -> None:
    for name, sub in module.named_modules():
        where = name or type(module).__name__
        if isinstance(sub, nn.modules.dropout._DropoutNd) and sub.p > 0:
            raise ModuleError(
                f"{where} is dropout (p = {sub.p}): a replayed step would draw another mask, so "
                "reverse mode would differentiate a step that was not taken; set p = 0"
            )
        if isinstance(sub, BATCH_NORMS) and sub.track_running_stats and sub.momentum is None:
            raise ModuleError(
                f"{where} is BatchNorm with momentum=None (a cumulative average); "
                "give it a momentum (torch's default is 0.1)"
            )
    for name, buffer in module.named_buffers():
        if not buffer.is_floating_point() and not name.endswith("num_batches_tracked"):
            raise ModuleError(
                f"buffer {name} is {buffer.dtype}: only floating-point buffers can be state; "
                "make it a float or a constant attribute"
            )


class StateNorm(nn.Module):
    """A BatchNorm layer whose running statistics are read, never written: in train mode it
    normalises by the batch and records its input in `inputs` (the caller updates the
    statistics); in eval mode it normalises by `running_mean` and `running_var`."""

    def __init__(self, norm: nn.Module, name: str, inputs: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.weight, self.bias = norm.weight, norm.bias
        self.register_buffer("running_mean", norm.running_mean)
        self.register_buffer("running_var", norm.running_var)
        self.eps, self.momentum, self.name, self.inputs = norm.eps, norm.momentum, name, inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.inputs[self.name] = x
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        out = (x - self.running_mean.reshape(shape)) * torch.rsqrt(
            self.running_var.reshape(shape) + self.eps
        )
        if self.weight is not None:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out


def _with_state_norms(module: nn.Module, inputs: dict[str, torch.Tensor]) -> list[StateNorm]:
    """Replace every BatchNorm layer that tracks running statistics by a StateNorm, in place."""
    replaced = []
    for name, sub in list(module.named_modules()):
        if isinstance(sub, BATCH_NORMS) and sub.running_mean is not None:
            parent_name, _, child = name.rpartition(".")
            norm = StateNorm(sub, name, inputs)
            module.get_submodule(parent_name)._modules[child] = norm
            replaced.append(norm)
    return replaced


class FunctionalModel:
    """An `nn.Module` in `dtype` on `device`, called functionally on a `Model` pytree."""

    def __init__(self, module: nn.Module, dtype: torch.dtype, device: torch.device) -> None:
        if not isinstance(module, nn.Module):
            raise ModuleError(f"expected a torch.nn.Module, got {type(module).__name__}")
        _check(module)
        self._inputs: dict[str, torch.Tensor] = {}  # BatchNorm inputs of the current call
        self._eval = copy.deepcopy(module).to(device=device, dtype=dtype)
        self._norms = _with_state_norms(self._eval, self._inputs)
        self._eval.eval()
        # The same layers (the same names) in train mode, recording into the same `_inputs`.
        self._train = copy.deepcopy(self._eval, {id(self._inputs): self._inputs}).train()

    def initial(self) -> Model:
        """The module's own weights and floating-point buffers, copied."""
        params = {k: v.detach().clone() for k, v in self._eval.named_parameters()}
        buffers = {
            k: v.detach().clone() for k, v in self._eval.named_buffers() if v.is_floating_point()
        }
        return {"params": params, "buffers": buffers}

    def train_forward(self, model: Model, x: torch.Tensor) -> tuple[Any, dict[str, torch.Tensor]]:
        """The module's output in train mode and the buffers after the step's updates."""
        out = functional_call(self._train, {**model["params"], **model["buffers"]}, (x,))
        buffers = dict(model["buffers"])
        for norm in self._norms:
            # Taken out, not left: a tensor of this call must not outlive it (torch.func, compile).
            x_in = self._inputs.pop(norm.name)
            dims = [0, *range(2, x_in.dim())]
            m = norm.momentum
            for key, stat in (
                ("running_mean", x_in.mean(dims)),
                ("running_var", x_in.var(dims, correction=1)),
            ):
                name = f"{norm.name}.{key}"
                buffers[name] = (1 - m) * buffers[name] + m * stat
        return out, buffers

    def eval_forward(self, model: Model, x: torch.Tensor) -> Any:
        """The module's output in eval mode (running statistics from the model's buffers)."""
        return functional_call(self._eval, {**model["params"], **model["buffers"]}, (x,))
