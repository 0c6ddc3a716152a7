"""The `hobench` command: list, show, run, report, compare and one-line user errors."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from hobench.cli import main
from hobench.harness.cell import run_cell
from hobench.harness.store import ResultsStore
from hobench.harness.suite import Cell
from tests import harness_toys
from tests.report_fixture import write_fixture

SUITE = (
    'description = "toy suite"\nseeds = [0]\n[budget]\nsteps = 100\n'
    '[[tasks]]\nid = "q"\nkind = "toy-quad"\n'
)


@pytest.fixture(autouse=True)
def toy_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in harness_toys.plugin_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HOBENCH_TRACEBACK", raising=False)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hobench: error: ")
    return lines[0]


def results_dir(tmp_path: Path, strategies: tuple[str, ...] = ("toy-random", "toy-raise")) -> Path:
    """A results directory with one record per strategy, built in this process (fast)."""
    store = ResultsStore(tmp_path / "results")
    for kind in strategies:
        cell = Cell("q", "toy-quad", {}, kind, kind, {}, 0, {"seconds": None, "steps": 100}, "cpu")
        store.append(run_cell(cell, "toys", None, {"calibration_s": 0.05}))
    return store.path.parent


def test_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "good.toml").write_text(SUITE + '[[strategies]]\nkind = "toy-nan"\n')
    (tmp_path / "suites" / "bad.toml").write_text("seeds = -1\n")
    monkeypatch.chdir(tmp_path)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "tasks:" in out and "strategies:" in out
    assert "  toy-quad\n      A quadratic validation loss in one hyperparameter x" in out
    joined = " ".join(out.split())  # descriptions and parameters wrap, never cut
    assert "params: scale=1.0 label='toy'" in joined and "seed=" not in out  # harness keys hidden
    assert "points=4 sleep=0.0" in joined
    assert "  good (1 cells) - toy suite" in out
    assert "  bad - invalid: " in out


def test_show(tmp_path: Path, capsys) -> None:
    results = results_dir(tmp_path)
    for source in (results, results / "runs.jsonl"):
        assert main(["show", str(source)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "task q (toy-quad)"
        assert lines[1].split() == [
            "strategy", "ok", "failed", "test_acc", "val_loss", "regret", "wall_s", "overrun_s",
            "cost", "steps", "added_mb",
        ]  # fmt: skip
        assert lines[2].split()[:3] == ["toy-random", "1", "0"]
        assert lines[3].split() == ["toy-raise", "0", "1", *["-"] * 8]


def test_show_prints_cost_and_overrun(tmp_path: Path, capsys) -> None:
    """Means over ok cells of resources.cost (.3g) and resources.overrun_s (.1f)."""
    assert main(["show", str(write_fixture(tmp_path))]) == 0
    blocks = capsys.readouterr().out.split("\n\n")
    lines = blocks[1].splitlines()  # task auxtarget: the one with the failed cell
    assert lines[0] == "task auxtarget"
    header = lines[1].split()
    assert header == [
        "strategy", "ok", "failed", "test_acc", "val_loss", "wall_s", "overrun_s", "cost",
        "steps", "added_mb",
    ]  # fmt: skip
    rows = {line.split()[0]: dict(zip(header, line.split(), strict=True)) for line in lines[2:]}
    # rtho: 40 units of 0.125 plain runs; overruns of 0, 0.5 and 1 s over its three seeds.
    assert (rows["rtho"]["cost"], rows["rtho"]["overrun_s"]) == ("5", "0.5")
    # random: 8 units of 1.25; its failed cell (no cost recorded) is counted, not averaged.
    assert (rows["random"]["failed"], rows["random"]["cost"]) == ("1", "10")
    assert rows["random"]["overrun_s"] == "0.0"


def test_show_missing_results(tmp_path: Path, capsys) -> None:
    assert main(["show", str(tmp_path / "nowhere")]) == 2
    assert "no results file" in one_error_line(capsys)


def test_show_damaged_results(tmp_path: Path, capsys) -> None:
    runs = results_dir(tmp_path, ("toy-random",)) / "runs.jsonl"
    good = runs.read_text()
    runs.write_text(good + '{"cel\n' + good)  # damaged inside the file, not a torn last line
    assert main(["show", str(runs)]) == 2
    assert "StoreError: " in one_error_line(capsys)


def test_show_refuses_a_record_without_task(tmp_path: Path, capsys) -> None:
    (tmp_path / "runs.jsonl").write_text('{"cell": "a"}\n')  # used to show as "task None"
    assert main(["show", str(tmp_path)]) == 2
    assert "cell record 'a' lacks task, strategy, seed, status" in one_error_line(capsys)


def test_show_ignores_a_torn_last_line_with_a_warning(tmp_path: Path, capsys) -> None:
    runs = results_dir(tmp_path, ("toy-random",)) / "runs.jsonl"
    runs.write_text(runs.read_text() + '{"cell": "q/toy-ra')  # a write cut short by a crash
    assert main(["show", str(runs)]) == 0
    captured = capsys.readouterr()
    assert "toy-random" in captured.out
    assert "runs.jsonl:2: ignored a torn last line" in captured.err


def test_references_refuses_a_negative_seed(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["references", "--seed", "-1"])
    assert info.value.code == 2
    assert "argument --seed: must be in 0..4294967295, got -1" in capsys.readouterr().err


def test_report_of_no_records_is_an_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "runs.jsonl").write_text("")
    assert main(["report", str(tmp_path)]) == 2
    assert "no cell records; run a suite into it first" in one_error_line(capsys)
    assert not (tmp_path / "report").exists()


def test_bad_suite_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text(SUITE + '[[strategies]]\nkind = "toy-random"\npoints = "many"\n')
    assert main(["run", str(suite), "--results-dir", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"hobench: error: SuiteError: {suite}: strategies[0].points: ")


def test_missing_suite_and_traceback_switch(tmp_path: Path, capsys, monkeypatch) -> None:
    missing = str(tmp_path / "missing.toml")
    assert main(["run", missing]) == 2
    assert "file not found" in one_error_line(capsys)
    monkeypatch.setenv("HOBENCH_TRACEBACK", "1")
    with pytest.raises(ValueError, match="file not found"):
        main(["run", missing])


def test_run_exit_codes_and_only(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "toys.toml"
    suite.write_text(
        SUITE + '[[strategies]]\nkind = "toy-random"\n[[strategies]]\nkind = "toy-raise"\n'
    )
    base = ["run", str(suite), "--results-dir", str(tmp_path / "r"), "--quiet", "--jobs", "2"]
    assert main(base) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("task q (toy-quad)")
    assert "hobench: failed: q/toy-raise/0: RuntimeError: planted failure" in captured.err
    assert main([*base, "--only", "toy-random"]) == 0  # only the selected cells count
    assert "0 cell(s) run" in capsys.readouterr().err
    assert main([*base, "--only", "no-such-cell"]) == 2
    assert "matches no cell" in one_error_line(capsys)


def test_bad_arguments_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "x.toml", "--jobs", "0"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["run", "x.toml", "--device", "tpu"])
    assert info.value.code == 2


class FakeReportError(Exception):
    pass


@pytest.fixture
def fake_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> types.SimpleNamespace:
    """Stand-ins for hobench.report, to test the wiring without building a report."""
    calls = types.SimpleNamespace(regressions=[], compare_args=None)

    def write_report(results: Path, out_dir: Path | None = None, engine=None) -> Path:
        if not results.exists():
            raise FakeReportError(f"{results}: no results file\n(second line)")
        return (out_dir or results / "report") / "index.html"

    def compare(baseline, current, **kwargs):
        calls.compare_args = (baseline, current, kwargs)
        return types.SimpleNamespace(regressions=list(calls.regressions))

    report = types.ModuleType("hobench.report")
    report.write_report, report.compare = write_report, compare
    report.format_compare = lambda result: f"{len(result.regressions)} regression(s)"
    errors = types.ModuleType("hobench.report.errors")
    errors.ReportError = FakeReportError
    monkeypatch.setitem(sys.modules, "hobench.report", report)
    monkeypatch.setitem(sys.modules, "hobench.report.errors", errors)
    return calls


def test_report_wiring(tmp_path: Path, capsys, fake_report) -> None:
    assert main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "report" / "index.html")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "o")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "o" / "index.html")
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "FakeReportError: " in one_error_line(capsys)


def test_compare_wiring(tmp_path: Path, capsys, fake_report) -> None:
    args = ["compare", "base", "now", "--time-ratio", "2", "--acc-tolerance", "0.01"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == "0 regression(s)"
    assert fake_report.compare_args == (
        Path("base"),
        Path("now"),
        {
            "acc_tolerance": 0.01,
            "time_ratio": 2.0,
            "memory_ratio": 1.5,
            "allow_different_suites": False,
            "calibration_tolerance": 1.25,
        },
    )
    fake_report.regressions = ["q/toy-random: slower"]
    assert main(args) == 1


def test_report_and_compare_read_our_records(tmp_path: Path, capsys) -> None:
    """The real report package reads what the harness writes."""
    results = results_dir(tmp_path)
    assert main(["compare", str(results), str(results)]) == 0
    assert "No regressions" in capsys.readouterr().out
    assert main(["report", str(results)]) == 0
    assert Path(capsys.readouterr().out.strip()).is_file()
