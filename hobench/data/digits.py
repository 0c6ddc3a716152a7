"""scikit-learn's 8×8 digits, read from the file scikit-learn ships (no download, no import of
scikit-learn: see hobench.data.packaged)."""

from __future__ import annotations

import gzip

import numpy as np

from hobench.data.packaged import sklearn_data_file


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(X, y): the 1797 digits as float64 pixels in [0, 1] (64 per digit) and int64 labels."""
    with gzip.open(sklearn_data_file("digits.csv.gz", "digits"), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",")
    return table[:, :-1] / 16.0, table[:, -1].astype(np.int64)
