"""Find a data file that scikit-learn ships inside its package, without importing scikit-learn.

Importing scikit-learn costs a cell seconds and ~80 MB of resident memory, which the crossover
study's memory figure would count as the strategy's; the files themselves are small CSVs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hobench.data.errors import DataError

DATA_DIR = Path("datasets") / "data"  # inside the sklearn package


def sklearn_data_file(name: str, what: str) -> Path:
    """The path of `name` in scikit-learn's `datasets/data` folder; `what` names the data set
    in the one-line DataError raised when scikit-learn or the file is missing."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"scikit-learn's {what} need the scikit-learn package: pip install scikit-learn"
        )
    path = Path(spec.submodule_search_locations[0]) / DATA_DIR / name
    if not path.is_file():
        raise DataError(
            f"scikit-learn's {what}: {path} is missing; reinstall scikit-learn "
            "(pip install --force-reinstall scikit-learn)"
        )
    return path
