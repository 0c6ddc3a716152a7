"""Small helpers shared by tasks: devices, dtypes, seeded generators, metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F

DTYPES = {"float32": torch.float32, "float64": torch.float64}


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
