"""Fast feedback: `hobench list` and a suite's typo answer from the saved catalog without
importing torch; bare suite names resolve from anywhere; unknown names suggest the closest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hobench import catalog
from hobench.harness.suite import (
    SuiteError,
    _read_toml,
    _Validator,
    load_suite,
    resolve_suite_path,
)
from hobench.registry import STRATEGIES, TASKS, UnknownName
from tests import harness_toys
from tests.test_suite import MALFORMED

# The corpus's cases that only a class's check_params (code, not in the catalog) catches.
LEFT_TO_CODE = {
    "ift-fixed-point-with-alpha",
    "ift-hessian-without-alpha",
    "l2-range-empty",
    "n-corrupt-above-n-train",
    "n-train-below-features",
    "radius-above-n-train",
    "sizes-above-embedded-data",
    "truncated-online-above-delta",
}
ROOT = Path(__file__).resolve().parents[1]
TYPO = (
    'seeds = [0]\n[budget]\ncost = 1.0\n[[tasks]]\nkind = "ridgee"\n'
    '[[strategies]]\nkind = "random"\n'
)
NO_TORCH = """
import sys
from hobench.cli import main
codes = [main(["list"]), main(["run", sys.argv[1]])]
print(codes, "torch" in sys.modules, "optuna" in sys.modules)
"""


def in_memory_catalog() -> tuple[catalog.CachedRegistry, catalog.CachedRegistry]:
    """This process's registries (toys included) through the catalog's JSON and back."""
    for registry in (TASKS, STRATEGIES):
        registry.names()  # loads the built-ins
    data = json.loads(
        json.dumps({k: catalog._describe(r) for k, r in (("t", TASKS), ("s", STRATEGIES))})
    )
    return catalog.CachedRegistry("task", data["t"]), catalog.CachedRegistry("strategy", data["s"])


def test_list_and_a_typo_answer_without_importing_torch(tmp_path: Path) -> None:
    env = {**os.environ, catalog.CACHE_ENV: str(tmp_path / "cache")}
    env.pop(catalog.PLUGINS_ENV, None)
    typo = tmp_path / "typo.toml"
    typo.write_text(TYPO)
    run = [sys.executable, "-c", NO_TORCH, str(typo)]
    first = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert first.stdout.splitlines()[-1] == "[0, 2] True True"  # imported once, and saved
    again = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.stdout.splitlines()[-1] == "[0, 2] False False"
    assert again.stdout.count("\n  ") == first.stdout.count("\n  ")  # the same listing
    built_in = [n for n in TASKS.names() if TASKS.get(n).__module__.startswith("hobench.")]
    assert again.stderr.splitlines() == [
        f"hobench: error: SuiteError: {typo}: tasks[0].kind: unknown task 'ridgee'; did you "
        f"mean 'ridge'? known: {', '.join(built_in)}"
    ]


def test_the_catalog_is_the_registries_round_tripped() -> None:
    tasks, strategies = in_memory_catalog()
    for real, saved in ((TASKS, tasks), (STRATEGIES, strategies)):
        assert saved.names() == real.names()
        for name in real.names():
            assert repr(saved.parameters(name)) == repr(real.parameters(name)), name
            domains = getattr(real.get(name), "domains", {})
            assert saved.get(name).domains == domains, name
            assert saved.get(name).__doc__ == real.get(name).__dict__.get("__doc__")


def test_the_first_pass_finds_the_same_error_or_leaves_it_to_the_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the whole malformed-suite corpus: the catalog's pass reports exactly the full
    validation's line, except where only code (`check_params`) can tell."""
    for name, value in harness_toys.plugin_env().items():
        monkeypatch.setenv(name, value)
    fast = in_memory_catalog()
    left = set()
    for case, (text, _, _) in MALFORMED.items():
        path = tmp_path / f"{case}.toml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(SuiteError) as full:
            load_suite(path)
        try:
            _Validator(path, *fast).suite(_read_toml(path))
        except SuiteError as first:
            assert str(first) == str(full.value), case
        else:
            left.add(case)
    assert left == LEFT_TO_CODE


def test_editing_a_plugin_changes_the_catalogs_key(tmp_path, monkeypatch) -> None:
    plugin = tmp_path / "my_plugin_for_catalog.py"
    plugin.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(catalog.PLUGINS_ENV, "my_plugin_for_catalog")
    before = catalog._fingerprint()
    assert catalog._fingerprint() == before
    plugin.write_text("X = 1  # a parameter added\n")
    assert catalog._fingerprint() != before


def test_a_bare_suite_name_resolves_from_any_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_suite_path("smoke") == ROOT / "suites" / "smoke.toml"
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "smoke.toml").write_text("")
    assert resolve_suite_path("smoke") == Path("suites") / "smoke.toml"  # ./suites first
    with pytest.raises(SuiteError) as error:
        resolve_suite_path("smok")
    assert str(error.value).startswith("smok: no such suite file or suite name; did you mean ")


def test_unknown_names_suggest_the_closest(tmp_path) -> None:
    with pytest.raises(
        UnknownName, match=r"unknown strategy 'reverse-gh'; did you mean 'reverse-hg'\? known: "
    ):
        STRATEGIES.get("reverse-gh")
    path = tmp_path / "s.toml"
    path.write_text(TYPO.replace('"ridgee"', '"ridge"').replace('"random"', '"tpee"'))
    with pytest.raises(
        SuiteError, match=r"strategies\[0\]\.kind: unknown strategy 'tpee'; did you mean 'tpe'\?"
    ):
        load_suite(path)
    path.write_text(TYPO.replace('"ridgee"', '"ridge"\nl2_lwo = 0.1'))
    with pytest.raises(
        SuiteError,
        match=r"tasks\[0\]\.l2_lwo: unknown parameter of task 'ridge'; "
        r"did you mean 'l2_low'\? allowed: ",
    ):
        load_suite(path)


def test_a_class_registered_at_run_time_is_never_saved(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(catalog.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(catalog.PLUGINS_ENV, raising=False)
    monkeypatch.setitem(TASKS._classes, "made-here", type("MadeHere", (), {}))
    catalog.save()
    assert list(tmp_path.iterdir()) == []


def test_a_process_with_live_registries_never_reads_the_catalog(tmp_path, monkeypatch) -> None:
    """This test process registered the toys by importing them: a catalog saved by a plain
    `hobench` process (same environment, so the same key) must not stand in for them."""
    monkeypatch.setenv(catalog.CACHE_ENV, str(tmp_path))
    catalog._path().parent.mkdir(parents=True, exist_ok=True)
    catalog._path().write_text(json.dumps({"format": catalog.FORMAT, "task": {}, "strategy": {}}))
    assert TASKS.populated() and catalog.cached() is None
