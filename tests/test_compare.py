"""hobench.report.compare: the regression gate between a baseline and a current run."""

from __future__ import annotations

from pathlib import Path

import pytest

from hobench.report import compare, format_compare
from hobench.report.compare import SINGLE_SEED_TOLERANCE
from tests.report_fixture import make_records, write_fixture, write_runs


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("baseline"))


def _statuses(result) -> dict[tuple[str, str], str]:
    table = result.table
    return dict(
        zip(zip(table["task"], table["strategy"], strict=True), table["status"], strict=True)
    )


def test_unchanged_rerun_passes(baseline: Path, tmp_path: Path) -> None:
    result = compare(baseline, write_fixture(tmp_path))
    assert result.regressions == []
    assert set(_statuses(result).values()) == {"ok"}
    assert (result.table["time_basis"] == "calibrated").all()
    assert result.table["time_ratio"].tolist() == pytest.approx([1.0] * 6)
    assert "No regressions." in format_compare(result)


def test_planted_accuracy_drop_is_caught(baseline: Path, tmp_path: Path) -> None:
    current = write_fixture(tmp_path, acc_shift={("auxtarget", "rtho"): -0.05})
    result = compare(baseline, current)
    assert len(result.regressions) == 1
    assert result.regressions[0].startswith("auxtarget/rtho: accuracy 57.00% < baseline CI low")
    assert _statuses(result)["auxtarget", "rtho"] == "REGRESSION: accuracy"
    text = format_compare(result)
    assert "1 regression(s):" in text and "auxtarget/rtho: accuracy" in text


def test_planted_slowdown_is_caught(baseline: Path, tmp_path: Path) -> None:
    result = compare(baseline, write_fixture(tmp_path, time_scale=2.0))
    assert len(result.regressions) == 6  # every task × strategy, nothing else
    assert all(": time ×2.00 (calibrated) > ×1.5" in r for r in result.regressions)
    assert set(_statuses(result).values()) == {"REGRESSION: time"}


def test_slower_machine_with_larger_calibration_passes(baseline: Path, tmp_path: Path) -> None:
    current = write_fixture(tmp_path, time_scale=2.0, calibration_s=1.0)  # baseline: 0.5 s
    result = compare(baseline, current)
    assert result.regressions == []
    assert result.table["time_ratio"].tolist() == pytest.approx([1.0] * 6)


def test_missing_cell_is_a_regression(baseline: Path, tmp_path: Path) -> None:
    result = compare(baseline, write_fixture(tmp_path, drop=["hypercleaning/rtho/1"]))
    assert result.regressions == ["cell hypercleaning/rtho/1 missing in current"]
    assert _statuses(result)["hypercleaning", "rtho"] == "REGRESSION: missing"
    result = compare(baseline, write_fixture(tmp_path, include_failed=False))
    assert result.regressions == ["cell auxtarget/random/3 missing in current"]


def test_newly_failed_cell_is_a_regression(baseline: Path, tmp_path: Path) -> None:
    records = make_records()
    records[0].update(status="failed", error="ValueError: nan loss")
    result = compare(baseline, write_runs(tmp_path, records))
    assert result.regressions == [
        f"cell {records[0]['cell']} failed in current: ValueError: nan loss"
    ]


def test_memory_growth_is_a_regression(baseline: Path, tmp_path: Path) -> None:
    records = make_records()
    for record in records:
        if record["strategy"] == "random" and record["status"] == "ok":
            record["resources"]["peak_rss_mb"] *= 2
    result = compare(baseline, write_runs(tmp_path, records))
    assert sorted(result.regressions) == [
        "auxtarget/random: peak RSS ×2.00 > ×1.5",
        "hypercleaning/random: peak RSS ×2.00 > ×1.5",
    ]


def test_raw_times_without_calibration_are_said(baseline: Path, tmp_path: Path) -> None:
    result = compare(baseline, write_fixture(tmp_path, calibration_s=None))
    assert result.regressions == []
    assert (result.table["time_basis"] == "raw").all()
    assert any("compared raw" in note for note in result.notes)
    assert "Note: calibration_s missing" in format_compare(result)


def test_single_seed_uses_stated_tolerance(tmp_path: Path) -> None:
    def one_seed(shift: float) -> list[dict]:
        records = make_records(acc_shift={("auxtarget", "rtho"): shift}, include_failed=False)
        return [r for r in records if r["seed"] == 1]

    base = write_runs(tmp_path / "base", one_seed(0.0))
    small = compare(base, write_runs(tmp_path / "small", one_seed(-SINGLE_SEED_TOLERANCE / 2)))
    assert small.regressions == []
    assert small.table["acc_tolerance"].tolist() == [SINGLE_SEED_TOLERANCE] * 6
    large = compare(base, write_runs(tmp_path / "large", one_seed(-2 * SINGLE_SEED_TOLERANCE)))
    assert [r.split(":")[0] for r in large.regressions] == ["auxtarget/rtho"]
    explicit = compare(base, write_runs(tmp_path / "large2", one_seed(-0.02)), acc_tolerance=0.05)
    assert explicit.regressions == []


def test_new_pairs_are_listed_not_flagged(baseline: Path, tmp_path: Path) -> None:
    records = make_records()
    extra = [
        dict(r, strategy="tpe", strategy_kind="tpe", cell=r["cell"].replace("rtho", "tpe"))
        for r in records
        if r["strategy"] == "rtho"
    ]
    result = compare(baseline, write_runs(tmp_path, records + extra))
    assert result.regressions == []
    assert _statuses(result)["auxtarget", "tpe"] == "new"


def _printed_row(result, task: str, strategy: str) -> list[str]:
    """The whitespace-split line of `format_compare` for one task × strategy."""
    rows = [line.split() for line in format_compare(result).splitlines()]
    (row,) = [r for r in rows if r[:2] == [task, strategy]]
    return row


def test_overrun_is_shown_not_flagged(baseline: Path, tmp_path: Path) -> None:
    records = make_records()
    for record in records:
        if record["task"] == "auxtarget" and record["strategy"] == "reverse-hg":
            record["resources"]["overrun_s"] = 3.0  # past the seconds budget on every seed
    result = compare(baseline, write_runs(tmp_path, records))
    assert result.regressions == []
    overrun = result.table.set_index(["task", "strategy"])[["overrun_base", "overrun_current"]]
    assert overrun.loc["auxtarget", "reverse-hg"].tolist() == [0.0, 3.0]
    # rtho's fixture overruns 0, 0.5 and 1 s: mean 0.5 on both sides.
    assert overrun.loc["hypercleaning", "rtho"].tolist() == [0.5, 0.5]
    text = format_compare(result)
    assert "overrun s b/c" in text.splitlines()[0]
    row = _printed_row(result, "auxtarget", "reverse-hg")
    assert "0.0/3.0" in row and row[-1] == "ok"
    assert "Overrun (mean seconds past a seconds budget, baseline/current) is shown" in text


def test_overrun_missing_in_older_records_is_a_dash(tmp_path: Path) -> None:
    records = make_records()
    for record in records:
        record["resources"].pop("overrun_s", None)
    result = compare(write_runs(tmp_path / "old", records), write_fixture(tmp_path / "new"))
    assert result.regressions == []
    assert "–/0.5" in _printed_row(result, "auxtarget", "rtho")


def test_time_and_memory_are_shown_not_gated_across_torch_builds(
    baseline: Path, tmp_path: Path
) -> None:
    """A CUDA build of torch triples a worker's resident memory: not a regression of ours."""
    records = make_records(time_scale=2.0)
    for record in records:
        record["manifest"]["packages"] = {**record["manifest"]["packages"], "torch": "9.9.9+cu"}
        record["resources"]["peak_rss_mb"] *= 3
    result = compare(baseline, write_runs(tmp_path, records))
    assert result.regressions == []
    assert result.table["memory_ratio"].tolist() == pytest.approx([3.0] * 6)
    assert any("not gated" in note and "9.9.9+cu" in note for note in result.notes)
    # the same figures on the same build are regressions
    same_build = make_records(time_scale=2.0)
    assert len(compare(baseline, write_runs(tmp_path / "same", same_build)).regressions) == 6
