"""A user's model and data, as a suite names them ("tests.module_fixtures:TinyCNN"): a small CNN
with BatchNorm, a variant that returns an auxiliary loss, one with dropout, and 6×6 images."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CLASSES = 3


class TinyCNN(nn.Module):
    """Conv → BatchNorm → ReLU → average pool → linear: every kind of state a module task moves."""

    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width * 2 * 2, CLASSES)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(nn.functional.avg_pool2d(h, 2).flatten(1))


class TinyAuxCNN(TinyCNN):
    """TinyCNN that also returns an auxiliary loss: the mean square of its features."""

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        features = nn.functional.avg_pool2d(h, 2).flatten(1)
        return self.fc(features), (features**2).mean()


class DropoutCNN(TinyCNN):
    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)


def tiny_data():
    """120 6×6 images in 3 classes: a class's mean image plus noise (seeded, so fixed)."""
    rng = np.random.default_rng(0)
    y = np.arange(120) % CLASSES
    means = rng.normal(size=(CLASSES, 1, 6, 6))
    X = means[y] + 0.8 * rng.normal(size=(120, 1, 6, 6))
    return X.astype(np.float32), y


class FlatMLP(nn.Module):
    """A model for flat inputs: refused on images, before any cell."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(36, CLASSES)

    def forward(self, x):
        return self.fc(x)


def broken_data():
    raise OSError("no such file: my_images.npz")


def not_a_module():
    return "a string"


TINY = dict(
    model="tests.module_fixtures:TinyCNN",
    data="tests.module_fixtures:tiny_data",
    n_train=48,
    n_val=36,
    n_test=36,
    batch_size=12,
    steps=6,
    val_batch_size=12,
)
