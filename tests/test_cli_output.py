"""The `hobench` command as people expect it: --version, a quiet exit on a closed pipe, full
descriptions in `list`, and JSON from `show` and `compare`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hobench
from hobench.cli import EXIT_BROKEN_PIPE, main

ROOT = Path(__file__).resolve().parents[1]
SMOKE_BASELINE = ROOT / "results" / "smoke-baseline"


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"hobench {hobench.__version__}"


def test_closed_pipe_exits_quietly() -> None:
    """`hobench show DIR | head`: the reader is gone before we write; no error, no traceback."""
    read, write = os.pipe()
    os.close(read)  # every write to `write` now fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hobench", "show", str(SMOKE_BASELINE)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=600,  # a net only: CI machines run at load 6-10
        )
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == EXIT_BROKEN_PIPE


def test_list_describes_every_builtin_in_full(capsys, monkeypatch) -> None:
    monkeypatch.delenv("HOBENCH_PLUGINS", raising=False)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "(no description)" not in out and "…" not in out
    for name in ("tpe", "gp", "cmaes", "qmc", "reverse-hg", "forward-hg", "ridge"):
        assert f"\n  {name}\n      " in out, name
    # the whole first paragraph, wrapped: grid's used to stop at "so a grid cut short by a clock"
    joined = " ".join(out.split())
    assert "a grid cut short by a clock still" in joined


def test_show_json(capsys) -> None:
    assert main(["show", "--format", "json", str(SMOKE_BASELINE)]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    ridge = {row["strategy"]: row for row in rows if row["task"] == "ridge"}
    assert ridge["default"]["ok"] == 2 and ridge["default"]["regret"] == pytest.approx(0.261, 1e-3)
    assert ridge["default"]["test_acc"] is None


def test_compare_json(capsys) -> None:
    assert main(["compare", "--format", "json", str(SMOKE_BASELINE), str(SMOKE_BASELINE)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is True and document["regressions"] == []
    assert {row["mode"] for row in document["rows"]} == {"exact"}
