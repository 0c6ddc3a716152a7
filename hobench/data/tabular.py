"""scikit-learn's breast-cancer and diabetes tables, read from the files scikit-learn ships (no
download, no import of scikit-learn: see hobench.data.packaged). Raw values: a task
standardises them with its own training split's statistics."""

from __future__ import annotations

import numpy as np

from hobench.data.packaged import sklearn_data_file


def load_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """(X, y): 569 tumours × 30 float64 measurements; int64 labels 0 = malignant, 1 = benign."""
    # The first line is the header "569,30,malignant,benign"; the label is the last column.
    table = np.loadtxt(
        sklearn_data_file("breast_cancer.csv", "breast cancer data"), delimiter=",", skiprows=1
    )
    return table[:, :-1], table[:, -1].astype(np.int64)


def load_diabetes() -> tuple[np.ndarray, np.ndarray]:
    """(X, y): 442 patients × 10 float64 baseline variables (unscaled: age, sex, BMI, blood
    pressure, six serum measurements) and the float64 disease progression a year later."""
    X = np.loadtxt(sklearn_data_file("diabetes_data_raw.csv.gz", "diabetes data"))
    y = np.loadtxt(sklearn_data_file("diabetes_target.csv.gz", "diabetes data"))
    return X, y
