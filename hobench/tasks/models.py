"""The module task's models and data: built-in CNNs, and factories named by import path.

A suite names a model or a data set either by a built-in name or as "package.module:callable".
A model factory returns an `nn.Module`; built-ins receive the data's shape (`in_channels`,
`image_size`, `num_classes`) and the suite's `model_args`, a user's factory `model_args` alone.
A data factory returns (X, y) (arrays or tensors: X of shape (n, ...), y integer labels) or a
map-style `Dataset` of (x, y) pairs; hobench splits it by the seed like the built-in sets.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from hobench.data import load_digits, load_mnist


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, for 28×28 images."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        if image_size != 28:
            raise ValueError(f"lenet5 takes 28×28 images, got {image_size}×{image_size}")
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and an identity (or 1×1 projection) shortcut."""

    def __init__(self, width_in: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width_in, width, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut = nn.Sequential()
        if stride != 1 or width_in != width:
            self.shortcut = nn.Sequential(
                nn.Conv2d(width_in, width, 1, stride, bias=False), nn.BatchNorm2d(width)
            )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """A small residual CNN: a 3×3 stem, `stages` stages of `blocks` basic blocks (the width
    doubling and the resolution halving from the second stage on), global average pooling and
    a linear head. BatchNorm after every convolution."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        width: int = 16,
        stages: int = 3,
        blocks: int = 1,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        )
        layers, width_in = [], width
        for stage in range(stages):
            out = width * 2**stage
            for block in range(blocks):
                layers.append(BasicBlock(width_in, out, 2 if stage and not block else 1))
                width_in = out
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(width_in, num_classes)

    def forward(self, x):
        x = self.stages(torch.relu(self.stem(x)))
        return self.head(x.mean((2, 3)))


MODELS: dict[str, Callable[..., nn.Module]] = {"lenet5": LeNet5, "resnet": ResNet}


def _mnist(source: str, data_dir: str | None):
    X, y = load_mnist(source, data_dir=data_dir)
    return X.reshape(-1, 1, 28, 28), y


def _digits(source: str, data_dir: str | None):
    X, y = load_digits()
    return X.reshape(-1, 1, 8, 8).astype(np.float32), y


DATA: dict[str, Callable[[str, str | None], tuple[np.ndarray, np.ndarray]]] = {
    "mnist": _mnist,
    "digits": _digits,
}


class FactoryError(ValueError):
    """A model or data factory that cannot be used: the problem and the fix, one line."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem, self.fix = problem, fix


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_factory(spec: str, builtins: dict[str, Callable], what: str) -> Callable:
    """The built-in named `spec`, or the callable at "package.module:name"."""
    if spec in builtins:
        return builtins[spec]
    if ":" not in spec:
        raise FactoryError(
            f"unknown {what} {spec!r}",
            f"use one of {', '.join(sorted(builtins))} or an import path 'package.module:callable'",
        )
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import error or anything the module raised while loading
        raise FactoryError(
            f"{what} {spec!r}: cannot import {module_name!r} ({_first_line(exc)})",
            "check the name and put its folder on PYTHONPATH",
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise FactoryError(
            f"{what} {spec!r}: {module_name!r} has no callable {attribute!r}",
            "name a function or class defined there",
        )
    return factory


def build_model(spec: str, args: dict[str, Any], shape: dict[str, int]) -> nn.Module:
    """The model `spec` names: built-ins get the data's `shape` (in_channels, image_size,
    num_classes) under the suite's `args`; a user's factory gets `args` alone."""
    factory = load_factory(spec, MODELS, "model")
    kwargs = {**shape, **args} if spec in MODELS else dict(args)
    try:
        module = factory(**kwargs)
    except Exception as exc:
        raise FactoryError(
            f"model {spec!r} failed to build with {kwargs} ({_first_line(exc)})",
            "check model_args",
        ) from None
    if not isinstance(module, nn.Module):
        raise FactoryError(
            f"model {spec!r} returned {type(module).__name__}, not a torch.nn.Module",
            "return the module itself",
        )
    return module


def load_data(spec: str, source: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of the data set `spec` names, X float of shape (n, channels, ...), y int64."""
    factory = load_factory(spec, DATA, "data")
    try:
        data = factory(source, data_dir) if spec in DATA else factory()
    except Exception as exc:  # a missing file, a download refused, the user's code raising
        raise FactoryError(
            f"data {spec!r} failed ({_first_line(exc)})", "fix its loading"
        ) from None
    if isinstance(data, tuple) and len(data) == 2:
        X, y = data
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        pairs = [data[i] for i in range(len(data))]
        X = np.stack([np.asarray(x) for x, _ in pairs])
        y = np.asarray([int(label) for _, label in pairs])
    else:
        raise FactoryError(
            f"data {spec!r} returned {type(data).__name__}",
            "return (X, y) or a Dataset of (x, y) pairs",
        )
    X, y = np.asarray(X, dtype=np.float32), np.asarray(y)
    if X.ndim < 2 or len(X) != len(y) or not np.issubdtype(y.dtype, np.integer):
        raise FactoryError(
            f"data {spec!r}: X {X.shape} and y {y.shape} ({y.dtype}) do not pair up",
            "return X of shape (n, ...) and n integer labels",
        )
    return X, y.astype(np.int64)
