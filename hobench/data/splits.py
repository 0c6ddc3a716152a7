"""Seeded splits and the label-corruption protocol of data hyper-cleaning."""

from collections.abc import Sequence

import numpy as np

from hobench.data.errors import DataError


def split_indices(n: int, sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """Disjoint index sets of the given sizes, consecutive chunks of a seeded permutation of n.

    Raises:
        DataError: a size is negative or the sizes add up to more than n.
    """
    if any(size < 0 for size in sizes):
        raise DataError(f"split sizes must be non-negative, got {list(sizes)}")
    if sum(sizes) > n:
        raise DataError(
            f"split sizes {list(sizes)} add up to {sum(sizes)} but only {n} examples exist; "
            "ask for fewer or load a larger source"
        )
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum([0, *sizes])
    return [order[start:stop] for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


def corrupt_labels(
    y: np.ndarray, n_corrupt: int, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Replace n_corrupt labels, chosen uniformly without replacement, by a wrong class.

    Each new label is uniform over the num_classes - 1 classes other than the true one.

    Returns:
        (noisy copy of y, sorted indices of the corrupted examples).
    Raises:
        DataError: n_corrupt is outside [0, len(y)], num_classes < 2, or a label is out of range.
    """
    y = np.asarray(y)
    if not 0 <= n_corrupt <= len(y):
        raise DataError(f"cannot corrupt {n_corrupt} labels of {len(y)}; use 0..{len(y)}")
    if num_classes < 2:
        raise DataError(f"label corruption needs at least 2 classes, got {num_classes}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"labels must lie in 0..{num_classes - 1}, got {y.min()}..{y.max()}")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(y), size=n_corrupt, replace=False))
    # A shift in 1..num_classes-1 (mod num_classes) reaches every wrong class, never the true one.
    shift = rng.integers(1, num_classes, size=n_corrupt)
    noisy = y.copy()
    noisy[idx] = (y[idx] + shift) % num_classes
    return noisy, idx
