"""hobench.report.compare: the regression gate between a baseline and a current run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hobench.cli import main
from hobench.report import compare, format_compare
from hobench.report.compare import (
    SINGLE_SEED_TOLERANCE,
    SuiteMismatch,
    compare_json,
    metric_direction,
)
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
    # the fixture's val_acc and val_loss move with the accuracy: every metric is checked
    assert result.regressions == [
        "auxtarget/rtho: test_acc 0.57 < baseline CI low 0.61 - tolerance 0",
        "auxtarget/rtho: val_loss 0.73 > baseline CI high 0.68 + tolerance 0",
        "auxtarget/rtho: val_acc 0.57 < baseline CI low 0.62 - tolerance 0",
    ]
    assert _statuses(result)["auxtarget", "rtho"] == "REGRESSION: test_acc, val_loss, val_acc"
    text = format_compare(result)
    assert "3 regression(s):" in text and "auxtarget/rtho: test_acc" in text


def test_planted_slowdown_is_caught(baseline: Path, tmp_path: Path) -> None:
    result = compare(baseline, write_fixture(tmp_path, time_scale=2.0))
    assert len(result.regressions) == 6  # every task × strategy, nothing else
    assert all(": time ×2.00 (calibrated) > ×1.5" in r for r in result.regressions)
    assert set(_statuses(result).values()) == {"REGRESSION: time"}


def test_a_calibration_within_tolerance_normalises_time(baseline: Path, tmp_path: Path) -> None:
    current = write_fixture(tmp_path, time_scale=1.2, calibration_s=0.6)  # baseline: 0.5 s
    result = compare(baseline, current)
    assert result.regressions == []
    assert result.table["time_ratio"].tolist() == pytest.approx([1.0] * 6)
    assert set(result.table["time_basis"]) == {"calibrated"}


@pytest.mark.parametrize("time_scale", [2.0, 4.0, 0.5])
def test_a_calibration_differing_by_x2_does_not_gate_time(
    baseline: Path, tmp_path: Path, capsys, time_scale: float
) -> None:
    """A loaded or other machine: whatever the times, time is not compared and never printed
    as a ratio; the exit code is 0 when accuracy and cost agree."""
    current = write_fixture(tmp_path, time_scale=time_scale, calibration_s=1.0)  # baseline: 0.5
    result = compare(baseline, current)
    assert result.regressions == []
    assert result.table["time_ratio"].isna().all()
    assert set(result.table["time_basis"]) == {"not compared"}
    assert result.notes[0] == (
        "time not compared: the calibrations of the two runs differ by ×2.00, more than ×1.25: "
        "the machines, or the load on them, differ (accuracy and cost are still gated)"
    )
    assert main(["compare", str(baseline), str(current)]) == 0
    out = capsys.readouterr().out
    assert "×2.00 (calibrated)" not in out and "No regressions." in out
    assert sum("  –  not compared  " in line for line in out.splitlines()) == 6
    # The tolerance is stated and can be widened: then the normalised times are gated again.
    loose = compare(baseline, current, calibration_tolerance=2.0)
    assert loose.table["time_ratio"].tolist() == pytest.approx([time_scale / 2] * 6)
    assert len(loose.regressions) == (6 if time_scale / 2 > 1.5 else 0)


def test_a_drop_in_accuracy_still_fails_when_time_is_not_compared(
    baseline: Path, tmp_path: Path
) -> None:
    current = write_fixture(tmp_path, calibration_s=1.0, acc_shift={("auxtarget", "rtho"): -0.05})
    result = compare(baseline, current)
    assert [r.split(":")[0] for r in result.regressions] == ["auxtarget/rtho"] * 3
    assert set(result.table["time_basis"]) == {"not compared"}


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


def with_added_rss(records: list[dict], scale: float = 1.0, only: str = "") -> list[dict]:
    """Records carrying resources.added_rss_mb (the memory a cell adds over its worker's RSS
    after imports), `scale`d for strategy `only` (every strategy when empty)."""
    for record in records:
        added = 40.0 + 5 * record["seed"]
        if not only or record["strategy"] == only:
            added *= scale
        record["resources"].update(added_rss_mb=added, baseline_rss_mb=280.0)
    return records


def test_memory_added_by_a_cell_doubling_is_a_regression(tmp_path: Path) -> None:
    base = write_runs(tmp_path / "b", with_added_rss(make_records()))
    doubled = with_added_rss(make_records(), scale=2.0, only="random")
    result = compare(base, write_runs(tmp_path / "c", doubled))
    assert sorted(result.regressions) == [
        "auxtarget/random: memory added by the cell ×2.00 (45 -> 90 MB) > ×1.5",
        "hypercleaning/random: memory added by the cell ×2.00 (45 -> 90 MB) > ×1.5",
    ]
    # the process's peak RSS (imports included) is not what is gated
    grown_imports = with_added_rss(make_records())
    for record in grown_imports:
        record["resources"]["peak_rss_mb"] *= 3
    assert compare(base, write_runs(tmp_path / "i", grown_imports)).regressions == []


def test_small_memory_growth_under_the_floor_is_not_a_regression(tmp_path: Path) -> None:
    def tiny(scale: float) -> list[dict]:
        records = with_added_rss(make_records(), scale)
        for record in records:
            record["resources"]["added_rss_mb"] /= 10  # 4-5 MB: allocator noise
        return records

    result = compare(write_runs(tmp_path / "b", tiny(1.0)), write_runs(tmp_path / "c", tiny(2.0)))
    assert result.regressions == []
    assert result.table["memory_ratio"].tolist() == pytest.approx([2.0] * 6)


def test_memory_without_added_rss_is_not_comparable(baseline: Path, tmp_path: Path) -> None:
    """Old records carry only peak_rss_mb: shown as not comparable, never a regression."""
    records = with_added_rss(make_records(), scale=3.0)
    result = compare(baseline, write_runs(tmp_path, records))
    assert result.regressions == []
    assert set(result.table["memory_basis"]) == {"not comparable"}
    assert any("added_rss_mb" in note for note in result.notes)


def test_raw_times_without_calibration_are_said(baseline: Path, tmp_path: Path) -> None:
    result = compare(baseline, write_fixture(tmp_path, calibration_s=None))
    assert result.regressions == []
    assert set(result.table["time_basis"]) == {"not compared"}
    assert result.table["time_ratio"].isna().all()
    assert "Note: time not compared: calibration_s missing on a side" in format_compare(result)


def test_single_seed_uses_stated_tolerance(tmp_path: Path) -> None:
    def one_seed(shift: float) -> list[dict]:
        records = make_records(acc_shift={("auxtarget", "rtho"): shift}, include_failed=False)
        return [r for r in records if r["seed"] == 1]

    base = write_runs(tmp_path / "base", one_seed(0.0))
    small = compare(base, write_runs(tmp_path / "small", one_seed(-SINGLE_SEED_TOLERANCE / 2)))
    assert small.regressions == []
    tolerances = [
        detail["tolerance"]
        for details in small.metrics.values()
        for detail in details
        if detail["metric"] == "test_acc"
    ]
    assert tolerances == [SINGLE_SEED_TOLERANCE] * 6
    large = compare(base, write_runs(tmp_path / "large", one_seed(-2 * SINGLE_SEED_TOLERANCE)))
    assert {r.split(":")[0] for r in large.regressions} == {"auxtarget/rtho"}
    explicit = compare(base, write_runs(tmp_path / "large2", one_seed(-0.02)), acc_tolerance=0.05)
    # acc_tolerance applies to accuracy-like metrics; the loss keeps its relative tolerance
    assert [r.split(" ")[1] for r in explicit.regressions] == ["val_loss"]


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
    assert "overrun s b/c" in next(line for line in text.splitlines() if line.startswith("task"))
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


def other_build(records: list[dict], torch: str = "9.9.9+cu") -> list[dict]:
    for record in records:
        record["manifest"]["packages"] = {**record["manifest"]["packages"], "torch": torch}
    return records


def test_time_is_shown_not_gated_across_torch_builds(baseline: Path, tmp_path: Path) -> None:
    """Another torch build runs other kernels: its times are not comparable, and say so."""
    records = other_build(make_records(time_scale=2.0))
    result = compare(baseline, write_runs(tmp_path, records))
    assert result.regressions == []
    assert result.table["time_ratio"].isna().all()  # a ratio not compared is never shown
    assert set(result.table["time_basis"]) == {"not compared"}
    assert any("time not compared" in note and "9.9.9+cu" in note for note in result.notes)
    assert "torch: 2.13.0 -> 9.9.9+cu" in result.differences
    assert "differs:  torch: 2.13.0 -> 9.9.9+cu" in format_compare(result)
    # the same figures on the same build are regressions
    same_build = make_records(time_scale=2.0)
    assert len(compare(baseline, write_runs(tmp_path / "same", same_build)).regressions) == 6


def test_memory_added_is_gated_across_torch_builds(tmp_path: Path) -> None:
    """What a cell adds over its worker's baseline does not depend on the build's imports."""
    base = write_runs(tmp_path / "b", with_added_rss(make_records()))
    doubled = other_build(with_added_rss(make_records(), scale=2.0, only="rtho"))
    result = compare(base, write_runs(tmp_path / "c", doubled))
    assert [r.split(":")[0] for r in result.regressions] == ["hypercleaning/rtho", "auxtarget/rtho"]


def cost_only(records: list[dict]) -> list[dict]:
    """Deterministic budgets: cost alone, no clock, so a rerun on the same build is exact."""
    for record in records:
        record["budget"] = {"cost": record["budget"]["cost"], "seconds": None, "steps": None}
    return records


def with_regret(records: list[dict], scale: float = 1.0, cell: str = "") -> list[dict]:
    for record in records:
        if record["status"] == "ok":
            planted = not cell or record["cell"] == cell
            record["final"]["regret"] = 0.01 * (1 + record["seed"]) * (scale if planted else 1)
    return records


def test_regret_is_checked_and_planted_regression_caught(baseline: Path, tmp_path: Path) -> None:
    """The gap the issue measured: every regret x 50 passed. It is a regression now."""
    base = write_runs(tmp_path / "b", with_regret(make_records()))
    worse = compare(base, write_runs(tmp_path / "c", with_regret(make_records(), 50.0)))
    assert len(worse.regressions) == 6
    assert all(": regret 1 > baseline CI high" in r for r in worse.regressions), worse.regressions
    assert set(_statuses(worse).values()) == {"REGRESSION: regret"}
    assert (worse.table["primary"] == "regret").all()
    better = compare(base, write_runs(tmp_path / "d", with_regret(make_records(), 0.5)))
    assert better.regressions == []


def test_exact_under_deterministic_budgets(tmp_path: Path) -> None:
    """Cost budgets on the same build: one seed's regret 1e-9 worse is a regression; the same
    change under a seconds budget is inside the CI."""
    base = write_runs(tmp_path / "b", with_regret(cost_only(make_records())))
    same = compare(base, write_runs(tmp_path / "s", with_regret(cost_only(make_records()))))
    assert same.regressions == [] and set(same.table["mode"]) == {"exact"}
    nudged = with_regret(cost_only(make_records()), 1 + 1e-7, cell="auxtarget/rtho/1")
    result = compare(base, write_runs(tmp_path / "c", nudged))
    assert result.regressions == [
        "auxtarget/rtho: regret worse on 1 of 3 seed(s) under a deterministic budget "
        "(exact; mean 0.02 -> 0.02)"
    ]
    clocked = compare(
        write_runs(tmp_path / "b2", with_regret(make_records())),
        write_runs(tmp_path / "c2", with_regret(make_records(), 1 + 1e-7, "auxtarget/rtho/1")),
    )
    assert clocked.regressions == [] and set(clocked.table["mode"]) == {"interval"}
    # an improvement is not a regression, but an exact baseline that moved is pointed out
    improved = with_regret(cost_only(make_records()), 0.5, cell="auxtarget/rtho/1")
    result = compare(base, write_runs(tmp_path / "i", improved))
    assert result.regressions == []
    assert any("auxtarget/rtho" in note and "regenerate" in note for note in result.notes)
    # on another torch build the same nudge is compared by interval
    other = compare(base, write_runs(tmp_path / "o", other_build(nudged)))
    assert other.regressions == [] and set(other.table["mode"]) == {"interval"}


def test_cost_is_a_hard_gate_under_deterministic_budgets_whatever_the_calibration(
    tmp_path: Path,
) -> None:
    """More budget spent by the same cell is a regression even where time is not compared."""
    base = write_runs(tmp_path / "b", cost_only(make_records()))
    records = cost_only(make_records(calibration_s=1.0))  # baseline: 0.5 s, time not compared
    for record in records:
        if record["cell"] == "auxtarget/rtho/1":
            record["resources"]["cost"] *= 1.01
    result = compare(base, write_runs(tmp_path / "c", records))
    assert [r.split(" (exact")[0] for r in result.regressions] == [
        "auxtarget/rtho: cost worse on 1 of 3 seed(s) under a deterministic budget"
    ]
    assert set(result.table["time_basis"]) == {"not compared"}


def test_another_processor_model_is_compared_by_interval_not_exactly(tmp_path: Path) -> None:
    """The same build on another CPU model differs in the last bit: not a regression."""
    base = write_runs(tmp_path / "b", with_regret(cost_only(make_records())))
    nudged = with_regret(cost_only(make_records()), 1 + 1e-15, cell="auxtarget/rtho/1")
    for record in nudged:
        record["manifest"]["device_name"] = "Other CPU"
    result = compare(base, write_runs(tmp_path / "c", nudged))
    assert result.regressions == [] and set(result.table["mode"]) == {"interval"}
    assert (
        "metrics compared by interval, not exactly: the processors differ (Test CPU -> Other "
        "CPU) and round differently"
    ) in result.notes


def test_f1_is_checked(baseline: Path, tmp_path: Path) -> None:
    records = make_records()
    for record in records:
        if record["final"].get("f1") is not None:
            record["final"]["f1"] -= 0.2
    result = compare(baseline, write_runs(tmp_path, records))
    assert [r.split(" <")[0] for r in result.regressions] == ["hypercleaning/reverse-hg: f1 0.6"]


def test_different_suites_are_refused(baseline: Path, tmp_path: Path) -> None:
    records = make_records()
    for record in records:
        record["suite"] = "other"
    other = write_runs(tmp_path, records)
    with pytest.raises(SuiteMismatch, match="suite fixture, current .* is suite other"):
        compare(baseline, other)
    allowed = compare(baseline, other, allow_different_suites=True)
    assert allowed.regressions == []
    assert any("different suites" in note for note in allowed.notes)


def test_different_budgets_are_not_compared(baseline: Path, tmp_path: Path) -> None:
    records = make_records(acc_shift={("auxtarget", "rtho"): -0.2})
    for record in records:
        if record["strategy"] == "rtho":
            record["budget"] = {**record["budget"], "cost": 1.0}
    result = compare(baseline, write_runs(tmp_path, records))
    assert result.regressions == []
    assert _statuses(result)["auxtarget", "rtho"] == "not comparable: config differs"


def test_a_parameter_added_since_the_baseline_at_its_default_is_the_same_config(
    baseline: Path, tmp_path: Path
) -> None:
    """The baseline's cells predate rtho's `compile` (they do not record it): the current run's
    cells, recording it at its default, are compared; compiled, they are not."""
    records = make_records(acc_shift={("auxtarget", "rtho"): -0.2})
    for record in records:
        if record["strategy"] == "rtho":
            record["strategy_params"] = {"delta": 10, "compile": None}
    result = compare(baseline, write_runs(tmp_path / "default", records))
    assert _statuses(result)["auxtarget", "rtho"].startswith("REGRESSION")
    for record in records:
        if record["strategy"] == "rtho":
            record["strategy_params"]["compile"] = True
    result = compare(baseline, write_runs(tmp_path / "set", records))
    assert _statuses(result)["auxtarget", "rtho"] == "not comparable: config differs"
    for record in records:
        if record["strategy"] == "rtho":
            record["strategy_params"]["compile"] = None
            record["compile"] = True  # the suite compiled it
    result = compare(baseline, write_runs(tmp_path / "suite", records))
    assert _statuses(result)["auxtarget", "rtho"] == "not comparable: config differs"


def test_json_output(baseline: Path, tmp_path: Path) -> None:
    current = write_fixture(tmp_path, acc_shift={("auxtarget", "rtho"): -0.05})
    document = json.loads(compare_json(compare(baseline, current)))
    assert document["ok"] is False
    assert len(document["regressions"]) == 3
    assert document["baseline"]["suite"] == "fixture" and document["differences"] == []
    (row,) = [r for r in document["rows"] if (r["task"], r["strategy"]) == ("auxtarget", "rtho")]
    assert row["mode"] == "interval"
    assert {m["metric"]: m["verdict"] for m in row["metrics"]} == {
        "test_acc": "worse",
        "val_loss": "worse",
        "val_acc": "worse",
    }
    assert row["added_mb_base"] is None  # NaN becomes null


@pytest.mark.parametrize(
    ("name", "direction"),
    [("test_acc", 1), ("f1", 1), ("regret", -1), ("val_loss", -1), ("kept", 0), ("stopped_at", 0)],
)
def test_metric_direction(name: str, direction: int) -> None:
    assert metric_direction(name) == direction


# -- the gate on the committed smoke baseline, through the command line -----------------------

SMOKE_BASELINE = Path(__file__).resolve().parents[1] / "results" / "smoke-baseline"


def smoke_records() -> list[dict]:
    lines = (SMOKE_BASELINE / "runs.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_gate_on_the_smoke_baseline(tmp_path: Path, capsys) -> None:
    """The issue's "done when": exit 0 on a rerun of the same suite, 1 on a planted regret
    regression and on a planted 2x memory regression, 2 on two different suites."""

    def gate(records: list[dict], baseline: Path = SMOKE_BASELINE, *extra: str) -> int:
        current = write_runs(tmp_path / f"c{len(list(tmp_path.iterdir()))}", records)
        code = main(["compare", str(baseline), str(current), *extra])
        return code

    assert gate(smoke_records()) == 0

    regret = smoke_records()
    for record in regret:
        if record["final"].get("regret") is not None:
            record["final"]["regret"] *= 50
    assert gate(regret) == 1
    out = capsys.readouterr().out
    assert "ridge/tpe: regret worse on 2 of 2 seed(s) under a deterministic budget" in out

    def added(scale: float) -> list[dict]:
        records = smoke_records()
        for record in records:
            record["resources"].update(added_rss_mb=30.0 * scale, baseline_rss_mb=280.0)
        return records

    with_memory = write_runs(tmp_path / "memory-baseline", added(1.0))
    assert gate(added(1.0), with_memory) == 0
    assert gate(added(2.0), with_memory) == 1
    assert "memory added by the cell ×2.00 (30 -> 60 MB) > ×1.5" in capsys.readouterr().out

    other_suite = smoke_records()
    for record in other_suite:
        record["suite"] = "default"
    assert gate(other_suite) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("hobench: error: SuiteMismatch: baseline ")
    assert gate(other_suite, SMOKE_BASELINE, "--allow-different-suites") == 0


def test_gate_passes_against_a_baseline_of_another_torch_build(tmp_path: Path, capsys) -> None:
    """The fresh-machine path: pip resolved another torch build than the baseline's. Times are
    not comparable and metrics are compared by interval; the same numbers pass, and say why."""
    records = smoke_records()
    for record in records:
        packages = record["manifest"]["packages"]
        packages["torch"] = "2.99.0+cu129" if packages["torch"] != "2.99.0+cu129" else "2.13.0"
    baseline = write_runs(tmp_path / "cuda-build-baseline", records)
    assert main(["compare", str(baseline), str(SMOKE_BASELINE)]) == 0
    out = capsys.readouterr().out
    assert "differs:  torch: 2.99.0+cu129 -> 2.13.0+cpu" in out
    assert "No regressions." in out and "time not compared" in out


def test_cells_too_short_to_time_are_not_timed(tmp_path: Path) -> None:
    """Sub-second cells tripled their wall between two quiet runs on one machine: their time is
    shown as too short, never gated; a cell that became long enough to time still is."""

    def walls(seconds: float) -> list[dict]:
        records = make_records()
        for record in records:
            record["resources"]["wall_s"] = seconds
        return records

    baseline = write_runs(tmp_path / "b", walls(0.1))
    noisy = compare(baseline, write_runs(tmp_path / "c", walls(0.35)))
    assert noisy.regressions == []
    assert set(noisy.table["time_basis"]) == {"too short"}
    assert noisy.table["time_ratio"].isna().all()
    assert any("under 1 s on both sides" in note for note in noisy.notes)
    slow = compare(baseline, write_runs(tmp_path / "d", walls(1.5)))
    assert len(slow.regressions) == 6 and all(": time ×15.00" in r for r in slow.regressions)


def _with_cpu(records: list[dict], wall_scale: float, cpu_scale: float) -> list[dict]:
    """The records with their cells' CPU seconds: `cpu_scale` × the quiet wall (a cell that
    had a core to itself spends its wall on the CPU), and their wall × `wall_scale`."""
    for record in records:
        record["manifest"]["threads"] = 1  # one-thread cells, as the smoke suite's
        resources = record["resources"]
        resources["cpu_s"] = resources["wall_s"] * cpu_scale
        resources["wall_s"] *= wall_scale
    return records


@pytest.mark.parametrize("loaded", ["current", "baseline", "both"])
def test_cells_that_waited_for_a_cpu_are_not_timed_though_the_calibrations_agree(
    tmp_path: Path, capsys, loaded: str
) -> None:
    """make test at load 8: the cells ran ×3-4.8 slower while the calibrations, measured when
    the load was lighter, agreed within ×1.22, and the gate failed 13 rows on time. The cells'
    own CPU seconds show the wait: time is not compared there, and the gate passes."""
    quiet = write_runs(tmp_path / "quiet", _with_cpu(make_records(), 1.0, 1.0))
    busy = write_runs(tmp_path / "busy", _with_cpu(make_records(), 4.0, 1.0))
    # Both loaded alike: each waited x3, yet the busier one also ran x1.5 slower per CPU second
    # (a loaded machine's caches): the waits agree, the times do not.
    busy3 = write_runs(tmp_path / "busy3", _with_cpu(make_records(), 3.0, 1.0))
    busier = write_runs(tmp_path / "busier", _with_cpu(make_records(), 4.5, 1.5))
    base, cur = {"current": (quiet, busy), "baseline": (busy, quiet), "both": (busy3, busier)}[
        loaded
    ]
    result = compare(base, cur)
    assert result.regressions == []
    timed = result.table[result.table["time_basis"] != "too short"]
    assert len(timed) and set(timed["time_basis"]) == {"contended"}
    assert timed["time_ratio"].isna().all()
    assert any(note.startswith("time not compared where the cells waited") for note in result.notes)
    assert main(["compare", str(base), str(cur)]) == 0
    assert "No regressions." in capsys.readouterr().out


def test_a_slower_cell_that_did_not_wait_for_a_cpu_is_still_a_time_regression(
    tmp_path: Path,
) -> None:
    """The control: ×4 the wall and ×4 the CPU seconds is the code doing four times the work."""
    base = write_runs(tmp_path / "base", _with_cpu(make_records(), 1.0, 1.0))
    slower = write_runs(tmp_path / "slower", _with_cpu(make_records(), 4.0, 4.0))
    result = compare(base, slower)
    timed = result.table[result.table["time_basis"] != "too short"]
    assert len(timed) and set(timed["time_basis"]) == {"calibrated"}
    assert timed["time_ratio"].tolist() == pytest.approx([4.0] * len(timed))
    assert len(result.regressions) == len(timed)
    assert all(": time ×4.00 (calibrated) > ×1.5" in r for r in result.regressions)
