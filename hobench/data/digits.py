"""scikit-learn's 8×8 digits, read from the file scikit-learn ships (no download).

The file is read directly rather than through `sklearn.datasets.load_digits`: importing
scikit-learn costs a cell seconds and ~80 MB of resident memory, which the crossover study's
memory figure would count as the strategy's.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from hobench.data.errors import DataError

DIGITS_FILE = Path("datasets") / "data" / "digits.csv.gz"  # inside the sklearn package


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(X, y): the 1797 digits as float64 pixels in [0, 1] (64 per digit) and int64 labels."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "scikit-learn's digits need the scikit-learn package: pip install scikit-learn"
        )
    path = Path(spec.submodule_search_locations[0]) / DIGITS_FILE
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",")
    return table[:, :-1] / 16.0, table[:, -1].astype(np.int64)
