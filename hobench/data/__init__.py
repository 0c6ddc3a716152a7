"""Datasets: embedded defaults, checksummed downloads, scikit-learn's shipped tables, label
corruption and splits."""

from hobench.data import packaged
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
from hobench.data.tabular import load_breast_cancer, load_diabetes

__all__ = [
    "DEFAULT_MNIST_URL",
    "MNIST_FILES",
    "DataError",
    "corrupt_labels",
    "default_cache_dir",
    "fetch",
    "load_breast_cancer",
    "load_diabetes",
    "load_digits",
    "load_mnist",
    "load_mnist_full",
    "packaged",
    "read_idx",
    "sha256_of",
    "split_indices",
    "to_tensors",
    "write_idx",
]
