"""Datasets: embedded defaults, checksummed downloads, label corruption and splits."""

from hobench.data.digits import load_digits
from hobench.data.download import fetch, sha256_of
from hobench.data.errors import DataError
from hobench.data.idx import read_idx, write_idx
from hobench.data.mnist import (
    DEFAULT_MNIST_URL,
    MNIST_FILES,
    default_cache_dir,
    load_mnist,
    load_mnist_full,
    to_tensors,
)
from hobench.data.splits import corrupt_labels, split_indices

__all__ = [
    "DEFAULT_MNIST_URL",
    "MNIST_FILES",
    "DataError",
    "corrupt_labels",
    "default_cache_dir",
    "fetch",
    "load_digits",
    "load_mnist",
    "load_mnist_full",
    "read_idx",
    "sha256_of",
    "split_indices",
    "to_tensors",
    "write_idx",
]
