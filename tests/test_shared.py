"""hobench.harness.shared: values computed once per run, read back bit-identical."""

from __future__ import annotations

import pytest

from hobench.harness import shared


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(shared, "_folder", tmp_path / "shared")
    return tmp_path / "shared"


def test_outside_a_run_every_call_computes(monkeypatch) -> None:
    monkeypatch.setattr(shared, "_folder", None)
    calls = []
    for _ in range(2):
        assert shared.computed_once({"k": 1}, lambda: calls.append(1) or 0.1) == 0.1
    assert len(calls) == 2


def test_a_stored_value_is_read_back_exactly(folder) -> None:
    value = {"acc": 0.1 + 0.2, "lr": 1 / 3}  # floats whose repr must round-trip exactly
    calls = []
    for _ in range(3):
        got = shared.computed_once({"seed": 0}, lambda: calls.append(1) or value)
        assert got == value
    assert len(calls) == 1
    assert shared.computed_once({"seed": 1}, lambda: 7) == 7  # another key, another value


def test_a_damaged_file_is_recomputed(folder) -> None:
    shared.computed_once({"seed": 0}, lambda: 1)
    (path,) = folder.glob("*.json")
    path.write_text('{"key": {"seed": 0}, "val')  # torn by a killed worker
    assert shared.computed_once({"seed": 0}, lambda: 2) == 2
